package exposition

import (
	"bytes"
	"math"
	"testing"
)

func TestFloatFormat(t *testing.T) {
	for _, c := range []struct {
		v    float64
		want string
	}{
		{0, "0"}, {math.Copysign(0, -1), "0"}, {1, "1"}, {-1, "-1"}, {12, "12"},
		{1.7e9, "1.7e+09"}, {1_700_000_100.5, "1.7000001005e+09"}, {5e-05, "5e-05"}, {0.0002, "0.0002"},
		{math.Inf(1), "+Inf"}, {math.Inf(-1), "-Inf"}, {math.NaN(), "NaN"},
		{float64(^uint64(0)), "1.8446744073709552e+19"},
	} {
		var buf bytes.Buffer
		writeFloat(&buf, c.v)
		if buf.String() != c.want {
			t.Errorf("writeFloat(%v) = %q, want %q", c.v, buf.String(), c.want)
		}
	}
}

func TestParseStat(t *testing.T) {
	// The command name holds ") " to show the fields are counted from the
	// last parenthesis.
	line := "4242 (we) ird) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 123456 1602740224 2747 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
	st, err := parseStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if want := (selfStat{utime: 250, stime: 75, starttime: 123456, vsize: 1602740224, rss: 2747}); st != want {
		t.Errorf("parseStat = %+v, want %+v", st, want)
	}
	if _, err := parseStat("4242 (short) S 1 2 3\n"); err == nil {
		t.Error("a truncated stat line parsed")
	}
}

func TestParseNetOctets(t *testing.T) {
	text := "TcpExt: SyncookiesSent InOctets\nTcpExt: 1 999\n" +
		"IpExt: InNoRoutes InOctets OutOctets InMcastOctets\nIpExt: 0 138179031 547836 7\n"
	in, out, err := parseNetOctets(text)
	if err != nil || in != 138179031 || out != 547836 {
		t.Errorf("parseNetOctets = %v, %v, %v; want 138179031, 547836, nil", in, out, err)
	}
	if _, _, err := parseNetOctets("IpExt: InOctets OutOctets\nIpExt: 1\n"); err == nil {
		t.Error("mismatched IpExt lines parsed")
	}
}

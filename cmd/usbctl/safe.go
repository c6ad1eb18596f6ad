package main

import (
	"strconv"
	"unicode"
	"unicode/utf8"
)

// safe makes a string from hardware (serial, product name) or from a config
// fit for a terminal: if it holds anything but printable characters —
// escape sequences, control characters, invalid UTF-8 — it is shown
// Go-quoted, so nothing a device says can move the cursor or recolour the
// screen, and the user sees exactly which bytes were there.
func safe(s string) string {
	if !utf8.ValidString(s) {
		return strconv.Quote(s)
	}
	for _, r := range s {
		if !unicode.IsPrint(r) {
			return strconv.Quote(s)
		}
	}
	return s
}

// cell is safe(s) cut to at most n runes for a table column.
func cell(s string, n int) string {
	s = safe(s)
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

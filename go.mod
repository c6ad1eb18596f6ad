module github.com/usbctl/usbctl

go 1.26.0

require (
	github.com/coreos/go-systemd/v22 v22.7.0
	github.com/hashicorp/hcl/v2 v2.25.0
	github.com/jkeiser/iter v0.0.0-20200628201005-c8aa0ae784d1
	github.com/jochenvg/go-udev v0.0.0-20240801134859-b65ed646224b
	github.com/prometheus/client_golang v1.25.0
	github.com/spf13/cobra v1.10.2
	libvirt.org/go/libvirt v1.11010.0
	libvirt.org/go/libvirtxml v1.12008.0
)

require (
	github.com/inconshreveable/mousetrap v1.1.0 // indirect
	github.com/spf13/pflag v1.0.9 // indirect
)

//go:build !medgemini_pkgconfig

package medgemini

// By default the package builds against the library of the source tree it
// lives in (include/ and lib/ two levels up). Build with
// -tags medgemini_pkgconfig to take the flags from pkg-config instead, or
// set CGO_CFLAGS / CGO_LDFLAGS to point at another copy.

/*
#cgo CFLAGS: -I${SRCDIR}/../../include
#cgo LDFLAGS: -L${SRCDIR}/../../lib -lmedgemini
*/
import "C"

//go:build medgemini_pkgconfig

package medgemini

// With -tags medgemini_pkgconfig the compiler and linker flags come from
// `pkg-config medgemini` (an installed library, or PKG_CONFIG_PATH pointing
// at a medgemini.pc).

/*
#cgo pkg-config: medgemini
*/
import "C"

package medgemini

/*
#include "medgemini.h"
*/
import "C"

import "strconv"

// HeaderVersionNumber is the version of the header this package was built
// against (MAJOR*10000 + MINOR*100 + PATCH).
const HeaderVersionNumber = uint32(C.MG_VERSION_NUMBER)

// VersionNumber is the version of the library actually loaded.
func VersionNumber() uint32 { return uint32(C.mg_version_number()) }

// Version is the loaded library's "MAJOR.MINOR.PATCH".
func Version() string { return C.GoString(C.mg_version_string()) }

// BuildInfo describes how the loaded library was built, as space-separated
// key=value pairs.
func BuildInfo() string { return C.GoString(C.mg_build_info()) }

// SIMD levels reported by SIMDLevel.
const (
	SIMDScalar = int(C.MG_SIMD_SCALAR)
	SIMDAVX2   = int(C.MG_SIMD_AVX2)
	SIMDAVX512 = int(C.MG_SIMD_AVX512)
)

// SIMDLevel is the instruction set level the kernels use in this process.
func SIMDLevel() int { return int(C.mg_simd_level()) }

// DType is a tensor element type.
type DType int32

// Tensor element types.
const (
	DTypeF32  DType = C.MG_DTYPE_F32
	DTypeF16  DType = C.MG_DTYPE_F16
	DTypeBF16 DType = C.MG_DTYPE_BF16
	DTypeQ8_0 DType = C.MG_DTYPE_Q8_0
	DTypeQ4_0 DType = C.MG_DTYPE_Q4_0
)

// String is the library's name of the type ("f32", "q8_0", ...), or
// "dtype(N)" for a value the library does not know.
func (d DType) String() string {
	cd := C.int32_t(d)
	p := C.mg_dtype_name(cd)
	if p == nil {
		return "dtype(" + strconv.FormatInt(int64(d), 10) + ")"
	}
	return C.GoString(p)
}

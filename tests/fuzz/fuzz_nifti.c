/* fuzz_nifti.c - volumes: the input as a NIfTI-1/2 file (gzip recognised
 * from the bytes) through mg_volume_load_nifti with small limits, then the
 * slices a model would read rendered. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *p = fz_write(".nii", data, size);
    if (!p) return 0;
    mg_volume_params vp = fz_volume_params();
    mg_volume *vol = NULL;
    char err[256];
    if (mg_volume_load_nifti(&vol, p, &vp, err, sizeof err) == MG_OK) fz_volume_use(vol);
    return 0;
}

/* fuzz_series.c - DICOM series: the input split at the line "%%" into up
 * to four DICOM files, assembled into one volume by mg_volume_load_dicom
 * (geometry, spacing, duplicates, series selection) with small limits,
 * then the slices a model would read rendered. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *const sfx[4] = {"-s0.dcm", "-s1.dcm", "-s2.dcm", "-s3.dcm"};
    const uint8_t *part[4];
    size_t len[4];
    fz_split(data, size, 4, part, len);
    const char *paths[4];
    size_t n = 0;
    for (int i = 0; i < 4; i++) {
        if (!len[i]) continue;
        const char *p = fz_write(sfx[i], part[i], len[i]);
        if (!p) return 0;
        paths[n++] = p;
    }
    if (!n) return 0;
    mg_volume_params vp = fz_volume_params();
    mg_volume *vol = NULL;
    char err[256];
    if (mg_volume_load_dicom(&vol, paths, n, &vp, err, sizeof err) == MG_OK) fz_volume_use(vol);
    return 0;
}

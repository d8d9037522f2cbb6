/* fuzz_image.c - images: mg_image_load_memory on arbitrary bytes (JPEG,
 * PNG, DICOM in every transfer syntax the library decodes), with limits
 * small enough for a fuzzer and a frame index from the last byte. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mg_image_params ip = MG_IMAGE_PARAMS_INIT;
    ip.max_pixels = 1u << 22;
    ip.max_memory = 64u << 20;
    for (int k = 0; k < 2; k++) {
        if (k) {
            if (!size || !(data[size - 1] & 1)) break;
            ip.frame = data[size - 1] >> 5; /* a later frame of a multi-frame DICOM */
        }
        mg_image *img = NULL;
        char err[256];
        if (mg_image_load_memory(&img, data, size, &ip, err, sizeof err) == MG_OK) {
            mg_image_info ii = {.struct_size = sizeof ii};
            mg_image_info_get(&ii, img);
            mg_image_free(img);
        }
    }
    return 0;
}

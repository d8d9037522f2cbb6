/* utf8.c - strict UTF-8 validation (no overlongs, no surrogates, <= U+10FFFF). */
#include "core/core.h"

int mg__utf8_valid(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str, *e = s + n;
    while (s < e) {
        unsigned c = *s;
        if (c == 0) return 0;
        if (c < 0x80) { s++; continue; }
        size_t len;
        uint32_t cp, min;
        if ((c & 0xe0) == 0xc0) { len = 2; cp = c & 0x1f; min = 0x80; }
        else if ((c & 0xf0) == 0xe0) { len = 3; cp = c & 0x0f; min = 0x800; }
        else if ((c & 0xf8) == 0xf0) { len = 4; cp = c & 0x07; min = 0x10000; }
        else return 0;
        if ((size_t)(e - s) < len) return 0;
        for (size_t k = 1; k < len; k++) {
            if ((s[k] & 0xc0) != 0x80) return 0;
            cp = (cp << 6) | (s[k] & 0x3f);
        }
        if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
        s += len;
    }
    return 1;
}

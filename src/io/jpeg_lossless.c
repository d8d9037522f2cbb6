/* jpeg_lossless.c - lossless JPEG decoding (ITU-T T.81 Annex H, process
 * 14: Huffman-coded differences of a predicted sample).
 *
 * The stream is a sequence of marker segments: SOF3 (frame header: sample
 * precision P, lines, samples per line, components), DHT (Huffman tables),
 * DRI (restart interval) and SOS (scan header), each SOS followed by its
 * entropy-coded data. A scan covers one or more components (interleaved:
 * one sample of each in turn; non-interleaved: one component alone). For
 * each sample the decoder reads a category SSSS (0..16) through the scan's
 * Huffman table, then SSSS extra bits giving the difference (SSSS 16 means
 * 32768 and has no extra bits), and adds it, modulo 2^16, to the prediction
 * from the left (Ra), upper (Rb) and upper-left (Rc) neighbours selected by
 * the scan's predictor 1..7. The first line of the image and of each
 * restart interval is predicted from the left, its first sample from
 * 2^(P-Pt-1); the first sample of the other lines from above. Samples are
 * coded shifted right by the point transform Pt, undone at the end.
 *
 * Nothing from the stream is trusted: segment lengths are checked against
 * the data left, Huffman tables must form a prefix code, scans may only
 * name components and tables that exist, each component is decoded once,
 * and the bit reader never reads past the data: when the entropy-coded
 * data ends (a marker or the end of the buffer) it supplies zero bits and
 * counts them; a decode that consumes any of them is an error. */
#include "io/jpeg_lossless.h"

#include <string.h>

/* Codes of up to LOOK_BITS bits are decoded by one table lookup. */
#define LOOK_BITS 9

typedef struct huff {
    int defined;
    uint8_t vals[256];
    int32_t maxcode[17];   /* [len]: largest code of that length, -1: none */
    int32_t mincode[17];
    int32_t valptr[17];    /* index in vals of the first code of a length */
    uint16_t look[1 << LOOK_BITS]; /* len << 8 | value; 0: longer code */
} huff;

typedef struct ll {
    const unsigned char *d;
    size_t n;
    uint16_t *out;
    uint32_t w, h, nc;
    int have_sof;
    uint32_t prec;
    uint8_t id[4];
    int done[4];
    huff tab[4];
    uint32_t restart;      /* MCUs per restart interval; 0: none */
    char *err;
    size_t errlen;
} ll;

typedef struct bitrd {
    const unsigned char *p, *end; /* next byte of entropy-coded data */
    uint64_t acc;          /* the low n bits are unread */
    int n;
    int pad;               /* how many of those n are zeros past the data */
    int stop;              /* reached a marker or the end of the buffer */
    int over;              /* a padding bit was consumed: data ran out */
} bitrd;

static uint32_t be16(const unsigned char *p) {
    return (uint32_t)p[0] << 8 | p[1];
}

static mg_status bad(ll *s, const char *what) {
    return mg__err(s->err, s->errlen, MG_E_IMAGE_FORMAT, "lossless JPEG: %s",
                   what);
}

/* ---- bit reader ---------------------------------------------------------- */

static void fill(bitrd *b) {
    while (b->n <= 56) {
        unsigned v = 0;
        if (!b->stop && b->p < b->end && b->p[0] != 0xFF) {
            v = *b->p++;
        } else if (!b->stop && b->end - b->p >= 2 && b->p[1] == 0x00) {
            v = 0xFF; /* a stuffed FF 00 */
            b->p += 2;
        } else {
            b->stop = 1; /* a marker, or the end: b->p stays on it */
            b->pad += 8;
        }
        b->acc = (b->acc << 8) | v;
        b->n += 8;
    }
}

/* The next k (1..16) bits; the caller has made n >= k. */
static uint32_t peek(const bitrd *b, int k) {
    return (uint32_t)(b->acc >> (b->n - k)) & ((1u << k) - 1);
}

static void drop(bitrd *b, int k) {
    b->n -= k;
    if (b->n < b->pad) b->over = 1;
}

/* One Huffman symbol, or -1 for a bit string that is no code. */
static int decode_sym(bitrd *b, const huff *t) {
    if (b->n < 16) fill(b);
    uint32_t look = t->look[peek(b, LOOK_BITS)];
    if (look) {
        drop(b, (int)(look >> 8));
        return (int)(look & 0xFF);
    }
    /* Canonical codes: the first length whose largest code is not below
     * the bits read so far (shorter lengths were ruled out by the table). */
    for (int len = LOOK_BITS + 1; len <= 16; len++) {
        int32_t code = (int32_t)peek(b, len);
        if (code <= t->maxcode[len]) {
            drop(b, len);
            return t->vals[t->valptr[len] + code - t->mincode[len]];
        }
    }
    return -1;
}

/* ---- marker segments ----------------------------------------------------- */

/* Huffman tables from counts[16] (codes per length) and vals: T.81 Annex C.
 * Lossless tables hold difference categories 0..16. */
static mg_status build_table(ll *s, huff *t, const unsigned char *counts,
                             const unsigned char *vals, uint32_t nv) {
    int32_t code = 0;
    uint32_t k = 0;
    memset(t, 0, sizeof *t);
    for (uint32_t i = 0; i < nv; i++)
        if (vals[i] > 16)
            return bad(s, "Huffman table holds a difference category above 16");
    memcpy(t->vals, vals, nv);
    for (int len = 1; len <= 16; len++) {
        int32_t c = counts[len - 1];
        if (code + c > ((int32_t)1 << len))
            return bad(s, "Huffman table is not a prefix code (too many codes "
                          "of one length)");
        t->valptr[len] = (int32_t)k;
        t->mincode[len] = code;
        t->maxcode[len] = c ? code + c - 1 : -1;
        if (len <= LOOK_BITS) {
            for (int32_t i = 0; i < c; i++) {
                uint32_t first = (uint32_t)(code + i) << (LOOK_BITS - len);
                uint32_t span = 1u << (LOOK_BITS - len);
                for (uint32_t j = 0; j < span; j++)
                    t->look[first + j] =
                        (uint16_t)((uint32_t)len << 8 | vals[k + (uint32_t)i]);
            }
        }
        code = (code + c) << 1;
        k += (uint32_t)c;
    }
    t->defined = 1;
    return MG_OK;
}

static mg_status read_dht(ll *s, const unsigned char *b, size_t len) {
    mg_status st;
    while (len > 0) {
        if (len < 17) return bad(s, "DHT segment is truncated");
        uint32_t tc = b[0] >> 4, th = b[0] & 15, nv = 0;
        for (int i = 1; i <= 16; i++) nv += b[i];
        if (tc > 1 || th > 3)
            return bad(s, "DHT names a table class or number out of range");
        if (nv > 256 || 17 + (size_t)nv > len)
            return bad(s, "DHT table is longer than its segment");
        /* Class 1 (AC) tables have no use in lossless coding: skipped. */
        if (tc == 0 && (st = build_table(s, &s->tab[th], b + 1, b + 17, nv)))
            return st;
        b += 17 + nv;
        len -= 17 + nv;
    }
    return MG_OK;
}

static mg_status read_sof3(ll *s, const unsigned char *b, size_t len,
                           int *precision) {
    if (s->have_sof) return bad(s, "more than one frame header");
    if (len < 6) return bad(s, "SOF3 segment is truncated");
    uint32_t p = b[0], y = be16(b + 1), x = be16(b + 3), nf = b[5];
    if (len != 6 + 3 * (size_t)nf)
        return bad(s, "SOF3 length does not match its component count");
    if (p < 2 || p > 16) {
        return mg__err(s->err, s->errlen, MG_E_IMAGE_FORMAT,
                       "lossless JPEG: sample precision %u is outside 2..16",
                       (unsigned)p);
    }
    *precision = (int)p;
    if (y == 0)
        return mg__err(s->err, s->errlen, MG_E_UNSUPPORTED,
                       "lossless JPEG: a frame whose height is given by a "
                       "DNL marker is not supported");
    if (x != s->w || y != s->h || nf != s->nc)
        return mg__err(s->err, s->errlen, MG_E_IMAGE_FORMAT,
                       "lossless JPEG: frame is %ux%u with %u components; the "
                       "DICOM header says %ux%u with %u", (unsigned)x,
                       (unsigned)y, (unsigned)nf, (unsigned)s->w,
                       (unsigned)s->h, (unsigned)s->nc);
    for (uint32_t i = 0; i < nf; i++) {
        const unsigned char *c = b + 6 + 3 * i;
        if (c[1] != 0x11)
            return mg__err(s->err, s->errlen, MG_E_UNSUPPORTED,
                           "lossless JPEG: component %u has sampling factors "
                           "%ux%u; only 1x1 is supported", (unsigned)i,
                           (unsigned)(c[1] >> 4), (unsigned)(c[1] & 15));
        for (uint32_t j = 0; j < i; j++)
            if (s->id[j] == c[0])
                return bad(s, "two components share an identifier");
        s->id[i] = c[0];
    }
    s->prec = p;
    s->have_sof = 1;
    return MG_OK;
}

/* Position of the next marker (FF followed by neither 00 nor FF) at or
 * after pos, or n. */
static size_t find_marker(const unsigned char *d, size_t n, size_t pos) {
    while (pos + 1 < n) {
        if (d[pos] == 0xFF && d[pos + 1] != 0x00 && d[pos + 1] != 0xFF)
            return pos;
        pos++;
    }
    return n;
}

static int32_t floor_half(int32_t v) { /* v >> 1 rounding down, portably */
    return v >= 0 ? v >> 1 : -((-v + 1) >> 1);
}

/* One scan: header b[0..len), entropy-coded data from *pos; on success
 * *pos is where the data ended. */
static mg_status read_scan(ll *s, const unsigned char *b, size_t len,
                           size_t *pos) {
    if (!s->have_sof) return bad(s, "scan before the frame header");
    if (len < 1) return bad(s, "SOS segment is truncated");
    uint32_t ns = b[0];
    if (ns < 1 || ns > s->nc || len != 4 + 2 * (size_t)ns)
        return bad(s, "SOS component count or length is wrong");
    uint32_t ci[4];
    const huff *tab[4];
    for (uint32_t k = 0; k < ns; k++) {
        uint32_t id = b[1 + 2 * k], td = b[2 + 2 * k] >> 4, c;
        for (c = 0; c < s->nc && s->id[c] != id; c++) {}
        if (c == s->nc) return bad(s, "scan names a component the frame lacks");
        if (s->done[c]) return bad(s, "a component is coded by two scans");
        for (uint32_t j = 0; j < k; j++)
            if (ci[j] == c) return bad(s, "scan names a component twice");
        if (td > 3 || !s->tab[td].defined)
            return bad(s, "scan uses an undefined Huffman table");
        ci[k] = c;
        tab[k] = &s->tab[td];
    }
    uint32_t psv = b[1 + 2 * ns], pt = b[3 + 2 * ns] & 15;
    if (psv < 1 || psv > 7)
        return mg__err(s->err, s->errlen, MG_E_IMAGE_FORMAT,
                       "lossless JPEG: predictor %u is outside 1..7",
                       (unsigned)psv);
    if (pt >= s->prec)
        return bad(s, "point transform is not below the sample precision");
    const uint32_t w = s->w, h = s->h, nc = s->nc;
    if (s->restart && s->restart % w)
        return mg__err(s->err, s->errlen, MG_E_UNSUPPORTED,
                       "lossless JPEG: restart interval %u is not a whole "
                       "number of lines of %u samples", (unsigned)s->restart,
                       (unsigned)w);
    const int32_t first_pred = (int32_t)1 << (s->prec - pt - 1);
    const size_t stride = (size_t)w * nc; /* samples per line */
    bitrd br = {s->d + *pos, s->d + s->n, 0, 0, 0, 0, 0};
    uint32_t left = s->restart, rst = 0, line0 = 0;

    for (uint32_t y = 0; y < h; y++) {
        uint16_t *row = s->out + (size_t)y * stride;
        for (uint32_t x = 0; x < w; x++) {
            if (s->restart && left == 0) {
                /* Restart: the next RSTn, bits discarded, prediction reset
                 * as at the top of the image (x is 0 here). */
                size_t m = find_marker(s->d, s->n, (size_t)(br.p - s->d));
                if (m + 1 >= s->n || s->d[m + 1] != 0xD0 + (rst & 7))
                    return mg__err(s->err, s->errlen, MG_E_IMAGE_FORMAT,
                                   "lossless JPEG: restart marker %u missing "
                                   "before line %u", (unsigned)(rst & 7),
                                   (unsigned)y);
                br = (bitrd){s->d + m + 2, s->d + s->n, 0, 0, 0, 0, 0};
                rst++;
                left = s->restart;
                line0 = y;
            }
            uint16_t *o = row + (size_t)x * nc;
            for (uint32_t k = 0; k < ns; k++) {
                uint32_t c = ci[k];
                int sym = decode_sym(&br, tab[k]);
                int32_t diff;
                if (sym < 0)
                    return mg__err(s->err, s->errlen, MG_E_IMAGE_FORMAT,
                                   "lossless JPEG: invalid Huffman code at "
                                   "line %u", (unsigned)y);
                if (sym == 0) {
                    diff = 0;
                } else if (sym == 16) {
                    diff = 32768;
                } else {
                    if (br.n < 16) fill(&br);
                    int32_t v = (int32_t)peek(&br, sym);
                    drop(&br, sym);
                    diff = v < ((int32_t)1 << (sym - 1))
                               ? v - ((int32_t)1 << sym) + 1 : v;
                }
                int32_t px;
                if (y == line0) {
                    px = x == 0 ? first_pred : (o - nc)[c];
                } else if (x == 0) {
                    px = (o - stride)[c];
                } else {
                    int32_t ra = (o - nc)[c], rb = (o - stride)[c],
                            rc = (o - stride - nc)[c];
                    switch (psv) {
                    case 1: px = ra; break;
                    case 2: px = rb; break;
                    case 3: px = rc; break;
                    case 4: px = ra + rb - rc; break;
                    case 5: px = ra + floor_half(rb - rc); break;
                    case 6: px = rb + floor_half(ra - rc); break;
                    default: px = (ra + rb) >> 1; break;
                    }
                }
                o[c] = (uint16_t)(((uint32_t)px + (uint32_t)diff) & 0xFFFF);
            }
            if (s->restart) left--;
        }
        if (br.over)
            return mg__err(s->err, s->errlen, MG_E_IMAGE_FORMAT,
                           "lossless JPEG: coded data ends in line %u of %u",
                           (unsigned)y, (unsigned)h);
    }
    /* Undo the point transform; keep every sample within P bits. */
    const uint32_t mask = (1u << s->prec) - 1;
    for (uint32_t k = 0; k < ns; k++) {
        uint32_t c = ci[k];
        uint16_t *o = s->out + c;
        for (size_t i = 0, n = (size_t)w * h; i < n; i++, o += nc)
            *o = (uint16_t)(((uint32_t)*o << pt) & mask);
        s->done[c] = 1;
    }
    *pos = (size_t)(br.p - s->d);
    return MG_OK;
}

mg_status mg__jpegll_decode(uint16_t *out, uint32_t w, uint32_t h,
                            uint32_t comps, const unsigned char *data,
                            size_t n, int *precision, char *err,
                            size_t errlen) {
    ll *s = mg__calloc(1, sizeof *s);
    mg_status st = MG_OK;
    *precision = 0;
    if (!s) return mg__err(err, errlen, MG_E_NOMEM, "out of memory");
    s->d = data;
    s->n = n;
    s->out = out;
    s->w = w;
    s->h = h;
    s->nc = comps;
    s->err = err;
    s->errlen = errlen;
    if (comps < 1 || comps > 4) {
        st = mg__err(err, errlen, MG_E_INVALID_ARG,
                     "lossless JPEG: %u components requested", (unsigned)comps);
        goto done;
    }
    if (n < 4 || data[0] != 0xFF || data[1] != 0xD8) {
        st = bad(s, "no SOI marker at the start");
        goto done;
    }
    size_t pos = 2;
    int after_scan = 0, eoi = 0;
    while (!eoi) {
        if (after_scan) pos = find_marker(data, n, pos);
        else if (pos < n && data[pos] != 0xFF) {
            st = mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                         "lossless JPEG: expected a marker at offset %zu", pos);
            goto done;
        }
        while (pos < n && data[pos] == 0xFF) pos++; /* fill bytes */
        if (pos >= n) break; /* no EOI: accepted if every sample is there */
        uint32_t m = data[pos++];
        after_scan = 0;
        if (m == 0xD9) {
            eoi = 1;
            continue;
        }
        if (m == 0x01) continue; /* TEM: no length */
        if (m == 0xD8 || m == 0x00 || (m >= 0xD0 && m <= 0xD7)) {
            st = mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                         "lossless JPEG: unexpected marker FF%02X at offset "
                         "%zu", (unsigned)m, pos - 2);
            goto done;
        }
        if (n - pos < 2 || be16(data + pos) < 2 || be16(data + pos) > n - pos) {
            st = mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                         "lossless JPEG: marker FF%02X segment at offset %zu "
                         "runs past the end of the data", (unsigned)m, pos - 2);
            goto done;
        }
        size_t len = be16(data + pos) - 2;
        const unsigned char *b = data + pos + 2;
        pos += len + 2;
        switch (m) {
        case 0xC3:
            st = read_sof3(s, b, len, precision);
            break;
        case 0xC4:
            st = read_dht(s, b, len);
            break;
        case 0xDD:
            if (len != 2) st = bad(s, "DRI segment has the wrong length");
            else s->restart = be16(b);
            break;
        case 0xDA:
            st = read_scan(s, b, len, &pos);
            after_scan = 1;
            break;
        case 0xC0: case 0xC1: case 0xC2:
            st = mg__err(err, errlen, MG_E_UNSUPPORTED,
                         "lossless JPEG: the frame is a DCT-based JPEG "
                         "(SOF%u), not lossless", (unsigned)(m - 0xC0));
            break;
        case 0xC5: case 0xC6: case 0xC7: case 0xDE: case 0xDF:
            st = mg__err(err, errlen, MG_E_UNSUPPORTED,
                         "lossless JPEG: hierarchical JPEG is not supported");
            break;
        case 0xC9: case 0xCA: case 0xCB: case 0xCD: case 0xCE: case 0xCF:
            st = mg__err(err, errlen, MG_E_UNSUPPORTED,
                         "lossless JPEG: arithmetic coding is not supported");
            break;
        case 0xF7:
            st = mg__err(err, errlen, MG_E_UNSUPPORTED,
                         "lossless JPEG: the frame is JPEG-LS (SOF55)");
            break;
        default: /* APPn, COM, DQT, DNL, DAC, ...: not needed */
            break;
        }
        if (st) goto done;
    }
    if (!s->have_sof) {
        st = bad(s, "no frame header (SOF3)");
        goto done;
    }
    for (uint32_t c = 0; c < comps; c++)
        if (!s->done[c]) {
            st = mg__err(err, errlen, MG_E_IMAGE_FORMAT,
                         "lossless JPEG: the data ends before component %u "
                         "was coded", (unsigned)c);
            goto done;
        }
done:
    mg__free(s);
    return st;
}

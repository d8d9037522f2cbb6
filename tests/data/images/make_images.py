#!/usr/bin/python3
"""Regenerates the tiny test images used by tests/check_image.c.

Run from anywhere:  /usr/bin/python3 tests/data/images/make_images.py

PNG files are written by the small PNG encoder below (pure Python + zlib), so
every colour type, bit depth, Adam7 interlacing and all five row filters can
be produced; their pixels follow the formulas p8()/p16() that check_image.c
recomputes independently. JPEG files and their reference decodes (.pgm/.ppm)
come from Pillow (python3-pil). pil_nih.txt holds Pillow's decode checksums of
the NIH ChestX-ray14 sample PNGs in ../shared/data (when present).
"""
import os
import struct
import sys
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", "..", ".."))


# ---- pixel formulas (mirrored in check_image.c) ---------------------------
def p8(x, y, c):
    return (x * (19 + c * 10) + y * (37 + c * 6) + x * y * c * 3 + c * 50) % 256


def p16(x, y, c):
    return (x * (5003 + c * 100) + y * (12011 + c * 7) + x * y * (c * 60013 + 1)
            + 17 + c) % 65536


def plow(x, y, depth):
    return (x * 3 + y) % (1 << depth)


def pal4_index(x, y):
    return (x + 2 * y) % 11


def pal4_entry(i):
    return (i * 23 % 256, i * 71 % 256, (255 - i * 13) % 256)


def pal8_index(x, y):
    return (x * 7 + y * 13) % 200


def pal8_entry(i):
    return ((i * 37) % 256, (i * 11 + 5) % 256, (i * 101) % 256)


# ---- a minimal PNG encoder --------------------------------------------------
def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def pack_row(samples, depth):
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    if depth == 8:
        return bytes(samples)
    out = bytearray()
    per = 8 // depth
    for i in range(0, len(samples), per):
        b = 0
        group = samples[i:i + per]
        for j, s in enumerate(group):
            b |= s << (8 - depth * (j + 1))
        out.append(b)
    return bytes(out)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_rows(rows, bpp):
    """Filters each row with type (row index % 5): exercises all filters."""
    out = bytearray()
    prev = bytes(len(rows[0])) if rows else b""
    for i, row in enumerate(rows):
        ft = i % 5
        f = bytearray()
        for k, v in enumerate(row):
            a = row[k - bpp] if k >= bpp else 0
            b = prev[k]
            c = prev[k - bpp] if k >= bpp else 0
            pred = (0, a, b, (a + b) // 2, paeth(a, b, c))[ft]
            f.append((v - pred) & 0xFF)
        out.append(ft)
        out += f
        prev = row
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4),
         (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def png_bytes(w, h, depth, color, pixel, interlace=False, palette=None,
              trns=None, before_idat=(), after_idat=(), idat_split=0):
    """pixel(x, y) -> tuple of samples for that pixel."""
    ch = CHANNELS[color]
    bpp = max(1, ch * depth // 8)
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    raw = bytearray()
    for (x0, y0, dx, dy) in passes:
        xs = list(range(x0, w, dx))
        ys = list(range(y0, h, dy))
        if not xs or not ys:
            continue
        rows = []
        for y in ys:
            samples = []
            for x in xs:
                samples.extend(pixel(x, y))
            rows.append(pack_row(samples, depth))
        raw += filter_rows(rows, bpp)
    z = zlib.compress(bytes(raw), 9)
    out = b"\x89PNG\r\n\x1a\n"
    out += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0,
                                      1 if interlace else 0))
    for c in before_idat:
        out += c
    if palette is not None:
        out += chunk(b"PLTE", b"".join(bytes(e) for e in palette))
    if trns is not None:
        out += chunk(b"tRNS", trns)
    if idat_split:
        for i in range(0, len(z), idat_split):
            out += chunk(b"IDAT", z[i:i + idat_split])
    else:
        out += chunk(b"IDAT", z)
    for c in after_idat:
        out += c
    out += chunk(b"IEND", b"")
    return out


def write(name, data):
    with open(os.path.join(HERE, name), "wb") as f:
        f.write(data)


def make_pngs():
    write("gray8.png", png_bytes(13, 7, 8, 0, lambda x, y: (p8(x, y, 0),)))
    write("gray16.png", png_bytes(11, 5, 16, 0, lambda x, y: (p16(x, y, 0),)))
    write("rgb8.png", png_bytes(9, 6, 8, 2,
                                lambda x, y: tuple(p8(x, y, c) for c in range(3))))
    write("rgb16.png", png_bytes(7, 5, 16, 2,
                                 lambda x, y: tuple(p16(x, y, c) for c in range(3)),
                                 idat_split=20))
    for d in (1, 2, 4):
        write("gray%d.png" % d,
              png_bytes(19, 3, d, 0, lambda x, y, d=d: (plow(x, y, d),)))
    write("gray_alpha8.png", png_bytes(10, 4, 8, 4,
                                       lambda x, y: (p8(x, y, 0), p8(x, y, 3))))
    write("gray_alpha16.png", png_bytes(6, 4, 16, 4,
                                        lambda x, y: (p16(x, y, 0), p16(x, y, 3))))
    write("rgba8.png", png_bytes(8, 3, 8, 6,
                                 lambda x, y: tuple(p8(x, y, c) for c in range(4))))
    write("rgba16.png", png_bytes(5, 4, 16, 6,
                                  lambda x, y: tuple(p16(x, y, c) for c in range(4))))
    write("palette4.png",
          png_bytes(9, 5, 4, 3, lambda x, y: (pal4_index(x, y),),
                    palette=[pal4_entry(i) for i in range(11)],
                    trns=bytes([0, 128, 255])))
    write("palette8.png",
          png_bytes(15, 6, 8, 3, lambda x, y: (pal8_index(x, y),),
                    palette=[pal8_entry(i) for i in range(200)]))
    write("gray8_trns.png", png_bytes(8, 4, 8, 0, lambda x, y: (p8(x, y, 0),),
                                      trns=struct.pack(">H", 19)))
    write("rgb8_adam7.png", png_bytes(13, 11, 8, 2,
                                      lambda x, y: tuple(p8(x, y, c) for c in range(3)),
                                      interlace=True))
    write("gray16_adam7.png", png_bytes(10, 9, 16, 0, lambda x, y: (p16(x, y, 0),),
                                        interlace=True))
    write("gray8_chunks.png",
          png_bytes(12, 5, 8, 0, lambda x, y: (p8(x, y, 0),),
                    before_idat=[chunk(b"gAMA", struct.pack(">I", 45455)),
                                 chunk(b"tEXt", b"Comment\0synthetic test image"),
                                 chunk(b"prVt", b"private ancillary chunk"),
                                 chunk(b"sBIT", b"\x06")],
                    after_idat=[chunk(b"tIME", struct.pack(">HBBBBB", 2024, 1, 2, 3, 4, 5))]))


# ---- JPEG (Pillow) ---------------------------------------------------------
def make_jpegs():
    from PIL import Image

    def save_ref(img, name):
        w, h = img.size
        mode = img.mode
        data = img.tobytes()
        magic = b"P5" if mode == "L" else b"P6"
        with open(os.path.join(HERE, name), "wb") as f:
            f.write(magic + b"\n%d %d\n255\n" % (w, h) + data)

    g = Image.new("L", (24, 16))
    g.putdata([16 + x * 6 + y * 5 for y in range(16) for x in range(24)])
    rgb = Image.new("RGB", (32, 24))
    rgb.putdata([(20 + x * 5 + y * 2, 200 - x * 3 - y * 2, 60 + (x + y) * 3)
                 for y in range(24) for x in range(32)])
    jobs = [
        ("gray.jpg", g, dict(quality=92)),
        ("rgb420.jpg", rgb, dict(quality=92, subsampling=2)),
        ("rgb444.jpg", rgb, dict(quality=95, subsampling=0)),
        ("rgb_prog.jpg", rgb, dict(quality=90, subsampling=2, progressive=True)),
    ]
    for name, img, kw in jobs:
        path = os.path.join(HERE, name)
        img.save(path, "JPEG", **kw)
        with Image.open(path) as dec:
            dec.load()
            save_ref(dec, name.replace(".jpg", ".pgm" if dec.mode == "L" else ".ppm"))
    rgb.convert("CMYK").save(os.path.join(HERE, "cmyk.jpg"), "JPEG", quality=90)


# ---- checksums of the shared NIH samples, decoded by Pillow ---------------
def fnv1a32(data):
    h = 0x811C9DC5
    for b in data:
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def make_nih_checksums():
    from PIL import Image
    import PIL
    d = os.path.join(ROOT, "..", "shared", "data", "nih_cxr14_samples")
    if not os.path.isdir(d):
        print("shared NIH samples absent; pil_nih.txt not regenerated", file=sys.stderr)
        return
    lines = ["# name width height pil_mode sum_of_samples fnv1a32_of_samples"
             " (Pillow %s)" % PIL.__version__]
    for name in sorted(os.listdir(d)):
        if not name.endswith(".png"):
            continue
        with Image.open(os.path.join(d, name)) as im:
            im.load()
            data = im.tobytes()
            lines.append("%s %d %d %s %d %08x" % (name, im.size[0], im.size[1],
                                                   im.mode, sum(data), fnv1a32(data)))
    with open(os.path.join(HERE, "pil_nih.txt"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    make_pngs()
    make_jpegs()
    make_nih_checksums()

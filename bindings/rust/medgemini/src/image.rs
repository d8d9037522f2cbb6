//! Images: JPEG, PNG and DICOM files, memory buffers and pixel arrays.
use crate::error::{Error, Result, Status};
use crate::sys;
use crate::util::{check, check_buf, cstring, opt_str, path_cstring, ERRLEN};
use std::ffi::{c_char, c_void};
use std::path::Path;
use std::ptr::{self, NonNull};

/// A decoded image, read-only after creation (so `Send + Sync`).
pub struct Image {
    ptr: NonNull<sys::mg_image>,
}

// SAFETY: mg_image objects are read-only after creation and may be shared
// (medgemini.h, "Threads").
unsafe impl Send for Image {}
unsafe impl Sync for Image {}

impl Drop for Image {
    fn drop(&mut self) {
        unsafe { sys::mg_image_free(self.ptr.as_ptr()) }
    }
}

/// Pixel layouts (16-bit ones native-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelFormat {
    Gray8,
    Gray16,
    Rgb8,
    Rgb16,
    Other(i32),
}

impl PixelFormat {
    fn from_code(c: i32) -> PixelFormat {
        match c {
            sys::MG_PIXEL_GRAY8 => PixelFormat::Gray8,
            sys::MG_PIXEL_GRAY16 => PixelFormat::Gray16,
            sys::MG_PIXEL_RGB8 => PixelFormat::Rgb8,
            sys::MG_PIXEL_RGB16 => PixelFormat::Rgb16,
            n => PixelFormat::Other(n),
        }
    }
    fn code(self) -> i32 {
        match self {
            PixelFormat::Gray8 => sys::MG_PIXEL_GRAY8,
            PixelFormat::Gray16 => sys::MG_PIXEL_GRAY16,
            PixelFormat::Rgb8 => sys::MG_PIXEL_RGB8,
            PixelFormat::Rgb16 => sys::MG_PIXEL_RGB16,
            PixelFormat::Other(n) => n,
        }
    }
    /// Bytes per pixel, None for an unknown format.
    pub fn bytes_per_pixel(self) -> Option<usize> {
        match self {
            PixelFormat::Gray8 => Some(1),
            PixelFormat::Gray16 => Some(2),
            PixelFormat::Rgb8 => Some(3),
            PixelFormat::Rgb16 => Some(6),
            PixelFormat::Other(_) => None,
        }
    }
}

/// Where an image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageSource {
    Pixels,
    Jpeg,
    Png,
    Dicom,
    Other(i32),
}

/// How DICOM grey values become display pixels (ignored for JPEG/PNG).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Window {
    /// The file's first VOI window; Auto when it has none.
    File,
    /// The frame's minimum..maximum.
    Auto,
    /// The given center and width (width >= 1), in modality units.
    Explicit { center: f64, width: f64 },
    /// No windowing: modality values (see [`ImageInfo::raw_offset`]).
    None,
}

/// Limits and DICOM settings of image loading.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ImageOptions {
    pub max_pixels: u64,
    pub max_memory: u64,
    pub max_width: u32,
    pub max_height: u32,
    /// Multi-frame DICOM: the 0-based frame.
    pub frame: u32,
    pub window: Window,
}

impl Default for ImageOptions {
    fn default() -> Self {
        let p = params_default();
        ImageOptions {
            max_pixels: p.max_pixels,
            max_memory: p.max_memory,
            max_width: p.max_width,
            max_height: p.max_height,
            frame: p.frame,
            window: Window::File,
        }
    }
}

impl ImageOptions {
    pub fn max_pixels(mut self, n: u64) -> Self {
        self.max_pixels = n;
        self
    }
    pub fn max_memory(mut self, n: u64) -> Self {
        self.max_memory = n;
        self
    }
    pub fn max_size(mut self, width: u32, height: u32) -> Self {
        self.max_width = width;
        self.max_height = height;
        self
    }
    pub fn frame(mut self, frame: u32) -> Self {
        self.frame = frame;
        self
    }
    pub fn window(mut self, w: Window) -> Self {
        self.window = w;
        self
    }

    fn to_c(&self) -> sys::mg_image_params {
        let mut p = params_default();
        p.max_pixels = self.max_pixels;
        p.max_memory = self.max_memory;
        p.max_width = self.max_width;
        p.max_height = self.max_height;
        p.frame = self.frame;
        match self.window {
            Window::File => p.window = sys::MG_WINDOW_FILE,
            Window::Auto => p.window = sys::MG_WINDOW_AUTO,
            Window::None => p.window = sys::MG_WINDOW_NONE,
            Window::Explicit { center, width } => {
                p.window = sys::MG_WINDOW_EXPLICIT;
                p.window_center = center;
                p.window_width = width;
            }
        }
        p
    }
}

fn params_default() -> sys::mg_image_params {
    unsafe {
        let mut p = std::mem::zeroed::<sys::mg_image_params>();
        sys::mg_image_params_init(&mut p);
        p
    }
}

/// Geometry and source details of an image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    pub source: ImageSource,
    pub bits_stored: u32,
    pub n_frames: u32,
    pub frame: u32,
    pub bits_allocated: u32,
    pub pixel_signed: bool,
    /// The window that produced the pixels (None when not windowed).
    pub window: Window,
    /// Unwindowed DICOM grey: modality value = pixel + raw_offset.
    pub raw_offset: i32,
    pub rescale_slope: f64,
    pub rescale_intercept: f64,
}

fn wrap(rc: i32, out: *mut sys::mg_image, err: &[c_char]) -> Result<Image> {
    check_buf(rc, err)?;
    let ptr = NonNull::new(out).ok_or_else(|| Error::new(Status::Internal, "NULL image"))?;
    Ok(Image { ptr })
}

impl Image {
    /// Decodes a JPEG, PNG or DICOM file (recognised by content).
    pub fn open(path: impl AsRef<Path>) -> Result<Image> {
        Image::open_with(path, &ImageOptions::default())
    }

    /// [`open`](Self::open) with limits and DICOM settings.
    pub fn open_with(path: impl AsRef<Path>, opts: &ImageOptions) -> Result<Image> {
        let c = path_cstring(path.as_ref())?;
        let p = opts.to_c();
        let mut err = [0 as c_char; ERRLEN];
        let mut out = ptr::null_mut();
        let rc = unsafe { sys::mg_image_load_file(&mut out, c.as_ptr(), &p, err.as_mut_ptr(), ERRLEN) };
        wrap(rc, out, &err)
    }

    /// Decodes an encoded image held in memory.
    pub fn from_bytes(data: &[u8]) -> Result<Image> {
        Image::from_bytes_with(data, &ImageOptions::default())
    }

    /// [`from_bytes`](Self::from_bytes) with limits and DICOM settings.
    pub fn from_bytes_with(data: &[u8], opts: &ImageOptions) -> Result<Image> {
        let p = opts.to_c();
        let mut err = [0 as c_char; ERRLEN];
        let mut out = ptr::null_mut();
        let rc = unsafe {
            sys::mg_image_load_memory(&mut out, data.as_ptr() as *const c_void, data.len(), &p,
                                      err.as_mut_ptr(), ERRLEN)
        };
        wrap(rc, out, &err)
    }

    /// Copies a pixel buffer. `stride` is the bytes between row starts (0 =
    /// tightly packed). The buffer must hold every row; 16-bit samples are
    /// native-endian.
    pub fn from_pixels(pixels: &[u8], width: u32, height: u32, stride: usize, format: PixelFormat) -> Result<Image> {
        let bpp = format
            .bytes_per_pixel()
            .ok_or_else(|| Error::new(Status::InvalidArg, "unknown pixel format"))?;
        let row = (width as usize)
            .checked_mul(bpp)
            .ok_or_else(|| Error::new(Status::InvalidArg, "image too wide"))?;
        let stride_eff = if stride == 0 { row } else { stride };
        if stride_eff < row {
            return Err(Error::new(Status::InvalidArg, "stride is shorter than a row"));
        }
        // The library reads (height-1)*stride + row bytes; check the slice.
        let need = if height == 0 || width == 0 {
            0
        } else {
            (height as usize - 1)
                .checked_mul(stride_eff)
                .and_then(|n| n.checked_add(row))
                .ok_or_else(|| Error::new(Status::InvalidArg, "image too large"))?
        };
        if pixels.len() < need {
            return Err(Error::new(
                Status::InvalidArg,
                format!("pixel buffer holds {} bytes, {width}x{height} needs {need}", pixels.len()),
            ));
        }
        let p = params_default();
        let mut err = [0 as c_char; ERRLEN];
        let mut out = ptr::null_mut();
        let rc = unsafe {
            sys::mg_image_from_pixels(&mut out, pixels.as_ptr() as *const c_void, width, height, stride,
                                      format.code(), &p, err.as_mut_ptr(), ERRLEN)
        };
        wrap(rc, out, &err)
    }

    /// Takes ownership of an image the library made (freed on drop).
    pub(crate) fn from_raw(ptr: NonNull<sys::mg_image>) -> Image {
        Image { ptr }
    }

    pub(crate) fn as_ptr(&self) -> *const sys::mg_image {
        self.ptr.as_ptr()
    }

    /// Size, pixel format and source details.
    pub fn info(&self) -> ImageInfo {
        let mut i = unsafe { std::mem::zeroed::<sys::mg_image_info>() };
        i.struct_size = std::mem::size_of::<sys::mg_image_info>() as u32;
        let _ = unsafe { sys::mg_image_info_get(&mut i, self.as_ptr()) };
        ImageInfo {
            width: i.width,
            height: i.height,
            format: PixelFormat::from_code(i.format),
            source: match i.source {
                sys::MG_IMAGE_SRC_PIXELS => ImageSource::Pixels,
                sys::MG_IMAGE_SRC_JPEG => ImageSource::Jpeg,
                sys::MG_IMAGE_SRC_PNG => ImageSource::Png,
                sys::MG_IMAGE_SRC_DICOM => ImageSource::Dicom,
                n => ImageSource::Other(n),
            },
            bits_stored: i.bits_stored,
            n_frames: i.n_frames,
            frame: i.frame,
            bits_allocated: i.bits_allocated,
            pixel_signed: i.pixel_signed != 0,
            window: match i.window {
                sys::MG_WINDOW_FILE => Window::File,
                sys::MG_WINDOW_AUTO => Window::Auto,
                sys::MG_WINDOW_EXPLICIT => Window::Explicit { center: i.window_center, width: i.window_width },
                _ => Window::None,
            },
            raw_offset: i.raw_offset,
            rescale_slope: i.rescale_slope,
            rescale_intercept: i.rescale_intercept,
        }
    }

    /// The pixels, tightly packed in the image's own format.
    pub fn pixels(&self) -> Result<Vec<u8>> {
        let mut need = 0usize;
        let rc = unsafe { sys::mg_image_copy_pixels(ptr::null_mut(), 0, &mut need, self.as_ptr()) };
        if rc != sys::MG_OK && rc != sys::MG_E_BUFFER_TOO_SMALL {
            return Err(Error::from_code(rc));
        }
        let mut buf = vec![0u8; need];
        check(unsafe { sys::mg_image_copy_pixels(buf.as_mut_ptr() as *mut c_void, buf.len(), &mut need, self.as_ptr()) })?;
        Ok(buf)
    }

    /// A text attribute of the source ("photometric", "transfer_syntax",
    /// "transfer_syntax_uid", "modality", "sop_class_uid", "series_uid").
    pub fn attribute(&self, key: &str) -> Option<&str> {
        let k = cstring(key, "key").ok()?;
        unsafe { opt_str(sys::mg_image_get_string(self.as_ptr(), k.as_ptr())) }
    }
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.info();
        f.debug_struct("Image").field("width", &i.width).field("height", &i.height).field("format", &i.format).finish()
    }
}

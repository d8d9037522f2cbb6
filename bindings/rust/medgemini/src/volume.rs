//! 3D volumes: DICOM series, NIfTI files and caller voxel arrays.
use crate::error::{Error, Result, Status};
use crate::image::Image;
use crate::sys;
use crate::util::{check, check_buf, cstring, opt_str, path_cstring, ERRLEN};
use std::ffi::{c_char, CString};
use std::path::Path;
use std::ptr::{self, NonNull};

/// A volume of float32 modality values (Hounsfield units for CT), x varying
/// fastest, then y, then z, with an affine from voxel indices to LPS+
/// patient millimetres. Read-only after creation (so `Send + Sync`).
pub struct Volume {
    ptr: NonNull<sys::mg_volume>,
}

// SAFETY: volumes are read-only after creation and may be shared by threads
// (medgemini.h, "volume").
unsafe impl Send for Volume {}
unsafe impl Sync for Volume {}

impl Drop for Volume {
    fn drop(&mut self) {
        unsafe { sys::mg_volume_free(self.ptr.as_ptr()) }
    }
}

/// Where a volume came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeSource {
    Voxels,
    Dicom,
    Nifti,
    Other(i32),
}

/// Choices and limits of volume loading.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct VolumeOptions {
    /// DICOM: the series to assemble (None: the one with the most slices).
    pub series_uid: Option<String>,
    /// DICOM: look into subfolders too.
    pub recursive: bool,
    /// DICOM: keep the first of slices sharing a position instead of failing.
    pub keep_duplicates: bool,
    /// DICOM: uneven slice spacing is an error instead of a warning.
    pub strict_spacing: bool,
    /// nx*ny*nz limit (None: the library's default, 2^29).
    pub max_voxels: Option<u64>,
    /// Bytes of voxels and of each file read (None: 4 GiB).
    pub max_memory: Option<u64>,
}

impl VolumeOptions {
    pub fn series_uid(mut self, uid: &str) -> Self {
        self.series_uid = Some(uid.to_string());
        self
    }
    pub fn recursive(mut self, on: bool) -> Self {
        self.recursive = on;
        self
    }
    pub fn keep_duplicates(mut self, on: bool) -> Self {
        self.keep_duplicates = on;
        self
    }
    pub fn strict_spacing(mut self, on: bool) -> Self {
        self.strict_spacing = on;
        self
    }
    pub fn max_voxels(mut self, n: u64) -> Self {
        self.max_voxels = Some(n);
        self
    }
    pub fn max_memory(mut self, n: u64) -> Self {
        self.max_memory = Some(n);
        self
    }

    /// The C struct, and the UID string it points to (keep it alive).
    fn to_c(&self) -> Result<(sys::mg_volume_params, Option<CString>)> {
        let mut p = unsafe { std::mem::zeroed::<sys::mg_volume_params>() };
        unsafe { sys::mg_volume_params_init(&mut p) };
        let mut flags = 0;
        if self.recursive {
            flags |= sys::MG_VOLUME_RECURSIVE;
        }
        if self.keep_duplicates {
            flags |= sys::MG_VOLUME_KEEP_DUPLICATES;
        }
        if self.strict_spacing {
            flags |= sys::MG_VOLUME_STRICT_SPACING;
        }
        p.flags = flags;
        if let Some(n) = self.max_voxels {
            p.max_voxels = n;
        }
        if let Some(n) = self.max_memory {
            p.max_memory = n;
        }
        let uid = match &self.series_uid {
            Some(u) => Some(cstring(u, "series_uid")?),
            None => None,
        };
        if let Some(u) = &uid {
            p.series_uid = u.as_ptr();
        }
        Ok((p, uid))
    }
}

/// How voxel values become the RGB pixels of the slices a model reads
/// (docs/VOLUME.md, "Slices for the model").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SliceWindow {
    /// CT for modality "CT", or no modality and values down to -500 HU or
    /// lower; else min-max (the default).
    #[default]
    Auto,
    /// R, G, B = the windows -1024..1024, -135..215 and 0..80 HU, each
    /// scaled to 0..255 (MedGemma 1.5's CT recipe).
    Ct,
    /// The volume's value range to 0..255, grey.
    MinMax,
    /// A raw `MG_SLICE_WINDOW_*` code (one this binding does not know; the
    /// library refuses unknown ones with [`Status::InvalidArg`]).
    Other(i32),
}

impl SliceWindow {
    fn code(self) -> i32 {
        match self {
            SliceWindow::Auto => sys::MG_SLICE_WINDOW_AUTO,
            SliceWindow::Ct => sys::MG_SLICE_WINDOW_CT,
            SliceWindow::MinMax => sys::MG_SLICE_WINDOW_MINMAX,
            SliceWindow::Other(n) => n,
        }
    }
}

/// The slices a model reads for a volume (`mg_slice_params`); `Default`
/// takes the library's defaults (85 slices, automatic window, radiological
/// view).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SliceOptions {
    /// All slices when the volume has no more, else this many evenly
    /// spaced ones (0 = the default 85; at most [`MAX_SLICES`]).
    pub max_slices: u32,
    pub window: SliceWindow,
    /// Slices in voxel order (rows along y, columns along x) instead of the
    /// radiological view.
    pub as_stored: bool,
}

/// The largest [`SliceOptions::max_slices`].
pub const MAX_SLICES: u32 = sys::MG_MAX_SLICES;

impl Default for SliceOptions {
    fn default() -> Self {
        let p = slice_params_default();
        SliceOptions {
            max_slices: p.max_slices,
            window: SliceWindow::Auto,
            as_stored: p.flags & sys::MG_SLICES_AS_STORED != 0,
        }
    }
}

impl SliceOptions {
    pub fn max_slices(mut self, n: u32) -> Self {
        self.max_slices = n;
        self
    }
    pub fn window(mut self, w: SliceWindow) -> Self {
        self.window = w;
        self
    }
    pub fn as_stored(mut self, on: bool) -> Self {
        self.as_stored = on;
        self
    }

    pub(crate) fn to_c(&self) -> sys::mg_slice_params {
        let mut p = slice_params_default();
        p.max_slices = self.max_slices;
        p.window = self.window.code();
        p.flags = if self.as_stored { sys::MG_SLICES_AS_STORED } else { 0 };
        p
    }
}

fn slice_params_default() -> sys::mg_slice_params {
    unsafe {
        let mut p = std::mem::zeroed::<sys::mg_slice_params>();
        sys::mg_slice_params_init(&mut p);
        p
    }
}

/// One slice a model reads: its RGB8 image and the volume's z index it
/// was cut at.
#[derive(Debug)]
pub struct VolumeSlice {
    pub z: u32,
    pub image: Image,
}

/// Size, geometry and value range of a volume.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeInfo {
    pub nx: u32,
    pub ny: u32,
    pub nz: u32,
    pub source: VolumeSource,
    pub n_files: u32,
    pub n_skipped: u32,
    pub n_warnings: u32,
    /// Millimetres between voxel centres along x, y, z.
    pub spacing: [f64; 3],
    /// Row-major 4x4: (i, j, k, 1) -> LPS+ millimetres.
    pub affine: [f64; 16],
    pub min_value: f64,
    pub max_value: f64,
}

fn wrap(rc: i32, out: *mut sys::mg_volume, err: &[c_char]) -> Result<Volume> {
    check_buf(rc, err)?;
    let ptr = NonNull::new(out).ok_or_else(|| Error::new(Status::Internal, "NULL volume"))?;
    Ok(Volume { ptr })
}

impl Volume {
    /// Assembles a DICOM series from files and/or folders.
    pub fn from_dicom<P: AsRef<Path>>(paths: &[P], opts: &VolumeOptions) -> Result<Volume> {
        let cs = paths.iter().map(|p| path_cstring(p.as_ref())).collect::<Result<Vec<_>>>()?;
        let ptrs: Vec<*const c_char> = cs.iter().map(|c| c.as_ptr()).collect();
        let (p, _uid) = opts.to_c()?;
        let mut err = [0 as c_char; ERRLEN];
        let mut out = ptr::null_mut();
        let rc = unsafe {
            sys::mg_volume_load_dicom(&mut out, ptrs.as_ptr(), ptrs.len(), &p, err.as_mut_ptr(), ERRLEN)
        };
        wrap(rc, out, &err)
    }

    /// Reads a NIfTI-1 or NIfTI-2 file (.nii or .nii.gz).
    pub fn from_nifti(path: impl AsRef<Path>, opts: &VolumeOptions) -> Result<Volume> {
        let c = path_cstring(path.as_ref())?;
        let (p, _uid) = opts.to_c()?;
        let mut err = [0 as c_char; ERRLEN];
        let mut out = ptr::null_mut();
        let rc = unsafe { sys::mg_volume_load_nifti(&mut out, c.as_ptr(), &p, err.as_mut_ptr(), ERRLEN) };
        wrap(rc, out, &err)
    }

    /// Copies nx*ny*nz voxels (x fastest) with a voxel -> LPS+ affine (None:
    /// the identity).
    pub fn from_voxels(voxels: &[f32], nx: u32, ny: u32, nz: u32, affine: Option<&[f64; 16]>,
                       modality: Option<&str>) -> Result<Volume> {
        let n = (nx as u64).checked_mul(ny as u64).and_then(|v| v.checked_mul(nz as u64));
        if n != Some(voxels.len() as u64) {
            return Err(Error::new(
                Status::InvalidArg,
                format!("{} voxels for a {nx}x{ny}x{nz} volume", voxels.len()),
            ));
        }
        let m = match modality {
            Some(s) => Some(cstring(s, "modality")?),
            None => None,
        };
        let (p, _uid) = VolumeOptions::default().to_c()?;
        let mut err = [0 as c_char; ERRLEN];
        let mut out = ptr::null_mut();
        let rc = unsafe {
            sys::mg_volume_from_voxels(&mut out, voxels.as_ptr(), nx, ny, nz,
                                       affine.map_or(ptr::null(), |a| a.as_ptr()),
                                       m.as_ref().map_or(ptr::null(), |c| c.as_ptr()), &p,
                                       err.as_mut_ptr(), ERRLEN)
        };
        wrap(rc, out, &err)
    }

    pub(crate) fn as_ptr(&self) -> *const sys::mg_volume {
        self.ptr.as_ptr()
    }

    /// Size, geometry and value range.
    pub fn info(&self) -> VolumeInfo {
        let mut i = unsafe { std::mem::zeroed::<sys::mg_volume_info>() };
        i.struct_size = std::mem::size_of::<sys::mg_volume_info>() as u32;
        let _ = unsafe { sys::mg_volume_info_get(&mut i, self.as_ptr()) };
        VolumeInfo {
            nx: i.nx,
            ny: i.ny,
            nz: i.nz,
            source: match i.source {
                sys::MG_VOLUME_SRC_VOXELS => VolumeSource::Voxels,
                sys::MG_VOLUME_SRC_DICOM => VolumeSource::Dicom,
                sys::MG_VOLUME_SRC_NIFTI => VolumeSource::Nifti,
                n => VolumeSource::Other(n),
            },
            n_files: i.n_files,
            n_skipped: i.n_skipped,
            n_warnings: i.n_warnings,
            spacing: i.spacing,
            affine: i.affine,
            min_value: i.min_value,
            max_value: i.max_value,
        }
    }

    /// The voxels, x fastest, then y, then z.
    pub fn voxels(&self) -> Result<Vec<f32>> {
        let mut need = 0usize;
        let rc = unsafe { sys::mg_volume_copy_voxels(ptr::null_mut(), 0, &mut need, self.as_ptr()) };
        if rc != sys::MG_OK && rc != sys::MG_E_BUFFER_TOO_SMALL {
            return Err(Error::from_code(rc));
        }
        let mut buf = vec![0f32; need];
        check(unsafe { sys::mg_volume_copy_voxels(buf.as_mut_ptr(), buf.len(), &mut need, self.as_ptr()) })?;
        Ok(buf)
    }

    /// The slices a model reads for this volume (what
    /// [`Context::report_volume`](crate::Context::report_volume) and
    /// [`Context::vqa_volume`](crate::Context::vqa_volume) encode), in
    /// prompt order: cut across z, turned to the radiological view unless
    /// `as_stored`, all of them when there are at most `max_slices`, else
    /// slice round(i / max_slices * (nz - 1)) for i = 1..max_slices (round
    /// half to even).
    pub fn slices(&self, opts: &SliceOptions) -> Result<Vec<VolumeSlice>> {
        let (z, images) = self.slices_raw(opts, true)?;
        Ok(z.into_iter().zip(images).map(|(z, image)| VolumeSlice { z, image }).collect())
    }

    /// The z indices of [`slices`](Self::slices), without making the images.
    pub fn slice_indices(&self, opts: &SliceOptions) -> Result<Vec<u32>> {
        Ok(self.slices_raw(opts, false)?.0)
    }

    fn slices_raw(&self, opts: &SliceOptions, images: bool) -> Result<(Vec<u32>, Vec<Image>)> {
        let p = opts.to_c();
        let mut err = [0 as c_char; ERRLEN];
        let mut n = 0usize;
        let rc = unsafe {
            sys::mg_volume_slices(ptr::null_mut(), 0, &mut n, ptr::null_mut(), self.as_ptr(), &p,
                                  err.as_mut_ptr(), ERRLEN)
        };
        check_buf(rc, &err)?;
        let mut z = vec![0u32; n];
        let mut out: Vec<*mut sys::mg_image> = if images { vec![ptr::null_mut(); n] } else { Vec::new() };
        let out_ptr = if images { out.as_mut_ptr() } else { ptr::null_mut() };
        let rc = unsafe {
            sys::mg_volume_slices(out_ptr, n, &mut n, z.as_mut_ptr(), self.as_ptr(), &p,
                                  err.as_mut_ptr(), ERRLEN)
        };
        check_buf(rc, &err)?;
        // Own every image first, so that all are freed should one be NULL.
        let owned: Vec<Option<Image>> = out.into_iter().map(|p| NonNull::new(p).map(Image::from_raw)).collect();
        let images = owned
            .into_iter()
            .map(|i| i.ok_or_else(|| Error::new(Status::Internal, "NULL slice image")))
            .collect::<Result<Vec<_>>>()?;
        Ok((z, images))
    }

    /// A text attribute ("modality", "series_uid", "study_uid",
    /// "frame_of_reference_uid", "description", "warnings", "slices").
    pub fn attribute(&self, key: &str) -> Option<&str> {
        let k = cstring(key, "key").ok()?;
        unsafe { opt_str(sys::mg_volume_get_string(self.as_ptr(), k.as_ptr())) }
    }

    /// The warnings (skipped files, other series, gaps, tilt ...).
    pub fn warnings(&self) -> Vec<&str> {
        self.attribute("warnings").map(|s| s.lines().collect()).unwrap_or_default()
    }

    /// Writes NIfTI-1 (gzip-compressed when the name ends in .gz) with qform
    /// and sform in RAS+; int16 when the values allow it unless `float32`.
    pub fn write_nifti(&self, path: impl AsRef<Path>, float32: bool) -> Result<()> {
        let c = path_cstring(path.as_ref())?;
        let mut err = [0 as c_char; ERRLEN];
        let flags = if float32 { sys::MG_NIFTI_FLOAT32 } else { 0 };
        let rc = unsafe { sys::mg_volume_write_nifti(self.as_ptr(), c.as_ptr(), flags, err.as_mut_ptr(), ERRLEN) };
        check_buf(rc, &err)
    }
}

impl std::fmt::Debug for Volume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = self.info();
        f.debug_struct("Volume").field("nx", &i.nx).field("ny", &i.ny).field("nz", &i.nz).finish()
    }
}

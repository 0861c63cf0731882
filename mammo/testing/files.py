"""Files and servers for tests: PNG and DICOM files, a waitress server in a thread."""

from __future__ import annotations

import numpy as np


def write_png(image: np.ndarray, path):
    """A grey image in [0, 1] written to ``path`` as an 8-bit PNG (values outside clipped); returns ``path``."""
    from PIL import Image

    Image.fromarray((np.clip(image, 0, 1) * 255).astype(np.uint8)).save(path)
    return path


def write_dicom(
    arr: np.ndarray,
    dest,
    *,
    photometric: str = "MONOCHROME2",
    bits_stored: int | None = None,
    syntax=None,
    compress=None,
    preamble: bool = True,
    with_pixels: bool = True,
    **elements,
):
    """A mammography DICOM (MG, "for presentation") of ``arr`` written to ``dest`` (a path or a binary file).

    ``syntax``: the transfer syntax (default Explicit VR Little Endian); ``compress``: a
    syntax to compress to; ``preamble=False`` writes a bare dataset (no preamble, no
    "DICM", no meta header); ``elements`` are set on the dataset as attributes.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import DigitalMammographyXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

    syntax = syntax or ExplicitVRLittleEndian
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalMammographyXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MG"
    ds.set_pixel_data(arr, photometric, bits_stored or arr.dtype.itemsize * 8)
    ds.file_meta.TransferSyntaxUID = syntax  # set_pixel_data resets it
    for key, value in elements.items():
        setattr(ds, key, value)
    if compress is not None:
        ds.compress(compress)
    if not with_pixels:
        del ds.PixelData
    if preamble:
        ds.save_as(dest, enforce_file_format=True)
    else:
        del ds.file_meta
        pydicom.dcmwrite(dest, ds, implicit_vr=True, little_endian=True)
    return dest


def run_until_closed(server) -> None:
    """``server.run()`` for a thread (a waitress server of :func:`mammo.webapp.make_server`):
    closing the server from another thread can race waitress' select loop, which then
    raises; that is the server shutting down, not an error."""
    try:
        server.run()
    except (OSError, ValueError):  # "bad file descriptor" after close()
        pass

"""Image loading, breast region, enhancement and feature transformers."""

from .cnn import CNNActivations, CNNEmbedding, WeightsUnavailableError
from .enhance import Enhancer, enhance
from .io import ImageReader, ImageReadError, read_image
from .region import BreastCropper, Mammogram, crop_breast
from .texture import GLCMFeatures, LBPFeatures

__all__ = [
    "BreastCropper",
    "CNNActivations",
    "CNNEmbedding",
    "Enhancer",
    "GLCMFeatures",
    "ImageReadError",
    "ImageReader",
    "LBPFeatures",
    "Mammogram",
    "WeightsUnavailableError",
    "crop_breast",
    "enhance",
    "read_image",
]

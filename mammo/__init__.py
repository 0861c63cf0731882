"""mammo: mammogram density and tumour classification with scikit-learn pipelines."""

__version__ = "0.1.0"

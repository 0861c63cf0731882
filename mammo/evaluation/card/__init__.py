"""The model card of a saved model: what it was trained on, how good it is and how sure that
is, and what it must not be used for (Mitchell et al. 2019, "Model Cards for Model Reporting";
laid out like Hugging Face and MONAI bundle cards).

:func:`build_card` (:mod:`.content`) reads what a run recorded, the saved model's metadata
(``training_data``, ``cv_metrics``, ``selection``, ``tasks``, ``ood``, ``versions``; see
:func:`mammo.training.results.artifact_metadata`) and, when at hand, the run's
``metrics.json``, into one :class:`ModelCard`; :mod:`.render` lays it out as Markdown and as
HTML from the same content, and ``mammo train`` writes both beside ``model.joblib``
(:func:`write_model_card`). The wording is in :mod:`.text`. Every number is copied from the
records; what a run did not record is said to be "not measured in this run". A model saved
without a card gets the same card from its metadata alone (the web app's ``/model-card``).
"""

from .content import Candidate, ModelCard, Score, Section, Table, TaskCard, build_card
from .render import CARD_FILES, card_html, card_markdown, card_style_hash, template_loader, write_model_card
from .text import NOT_MEASURED, RESEARCH_ONLY

__all__ = [
    "CARD_FILES",
    "NOT_MEASURED",
    "RESEARCH_ONLY",
    "Candidate",
    "ModelCard",
    "Score",
    "Section",
    "Table",
    "TaskCard",
    "build_card",
    "card_html",
    "card_markdown",
    "card_style_hash",
    "template_loader",
    "write_model_card",
]

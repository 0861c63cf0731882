"""The block registry (mammo.features.blocks): every consumer derives the blocks from it."""

from __future__ import annotations

import pytest

from mammo.classifiers import make_features, make_task_pipeline
from mammo.features import blocks
from mammo.features.cnn import CNNEmbedding
from mammo.features.extra import IntensityFeatures
from mammo.features.texture import GLCMFeatures, LBPFeatures


def test_feature_sets_and_their_blocks_in_column_order():
    assert blocks.FEATURE_SETS == ("texture", "cnn", "combined")
    assert blocks.blocks_of("texture") == ("glcm", "lbp")
    assert blocks.blocks_of("cnn") == ("cnn",)
    assert blocks.blocks_of("combined") == ("glcm", "lbp", "cnn")
    assert sorted(blocks.EXTRA_BLOCKS) == ["intensity"]
    assert blocks.block_order(["cnn", "intensity", "glcm"]) == ["glcm", "cnn", "intensity"]
    with pytest.raises(ValueError, match="must be one of"):
        blocks.blocks_of("sift")
    with pytest.raises(ValueError, match="unknown feature block"):
        blocks.make_block("sift")


def test_make_features_builds_the_registry_blocks_with_the_pipeline_options():
    union = make_features(
        "combined", glcm_levels=16, cnn_input_size=160, flip_tta=True, cnn_layers="last", extra_blocks=["intensity"]
    )
    names = [n for n, _ in union.transformer_list]
    assert names == ["glcm", "lbp", "cnn", "intensity"]
    glcm, lbp, cnn, extra = (t for _, t in union.transformer_list)
    assert isinstance(glcm, GLCMFeatures) and glcm.levels == 16 and isinstance(lbp, LBPFeatures)
    assert isinstance(cnn, CNNEmbedding) and (cnn.input_size, cnn.flip_tta, cnn.layers) == (160, True, "last")
    assert isinstance(extra, IntensityFeatures)
    pipe = make_task_pipeline("density", "texture", "svm", extra_blocks=["intensity"])
    assert [n for n, _ in pipe.named_steps["features"].transformer_list] == ["glcm", "lbp", "intensity"]


def test_feature_set_name_is_read_back_from_a_models_blocks():
    assert blocks.feature_set_name(["glcm", "lbp", "cnn"]) == "combined"
    assert blocks.feature_set_name(["glcm", "lbp"]) == "texture"
    assert blocks.feature_set_name(["cnn"]) == "cnn"
    assert blocks.feature_set_name(["glcm", "lbp", "intensity"]) == "texture+intensity"
    assert blocks.feature_set_name(["glcm", "cnn"]) == "cnn"  # not a whole feature set: the largest that is
    assert blocks.feature_set_name([]) == ""


def test_the_extra_blocks_old_home_still_answers():
    from mammo.features import extra

    assert extra.EXTRA_BLOCKS is blocks.EXTRA_BLOCKS
    assert isinstance(extra.make_extra_block("intensity"), IntensityFeatures)
    with pytest.raises(AttributeError):
        _ = extra.no_such_name

"""Each training stage trains with its own data settings (crops, batch), the run's `data.*` where unset;
changing them re-runs that stage, not the ones before it."""

from lesseg.api import pipeline_stages
from lesseg.config import StageDataConfig, load_config
from lesseg.data.classes import ClassInfo
from lesseg.engine.trainer import TrainSettings
from lesseg.pipeline import Pipeline
from lesseg.registry import get_method


def hashes(*overrides):
    cfg = load_config("configs/cam/synthetic.yaml", ["eval.refinement=true", *overrides])
    stages = pipeline_stages(
        get_method("cam")(cfg, classes=ClassInfo(("background", "a"), background="background"))
    )
    return {s.name: Pipeline(stages).stage_hash(s.name, cfg) for s in stages}


def test_a_stage_s_own_crop_reruns_only_that_stage():
    base, seg, bnd = hashes(), hashes("segmenter.data.crop_size=96"), hashes("boundary.data.batch_size=4")
    assert seg["classifier"] == base["classifier"] and seg["pseudo_labels"] == base["pseudo_labels"]
    assert seg["segmenter"] != base["segmenter"]
    assert bnd["affinity_labels"] == base["affinity_labels"] and bnd["boundary"] != base["boundary"]
    assert (
        hashes("segmenter.data.crop_size=128")["segmenter"] != base["segmenter"]
    )  # set, even to data's value


def test_unset_stage_settings_take_the_runs_data():
    cfg = load_config("configs/cam/synthetic.yaml", ["data.batch_size=12", "segmenter.data.crop_size=64"])
    d = cfg.segmenter.data.resolve(cfg.data)
    assert (d.crop_size, d.batch_size, d.scale_range) == (64, 12, cfg.data.scale_range)
    run = TrainSettings.from_config(cfg)
    own = TrainSettings.from_config(cfg, data=StageDataConfig(batch_size=4))
    assert run.batch_size == 12 and own.batch_size == 4 and own.key != run.key
    assert TrainSettings.from_config(cfg, data=StageDataConfig()).key == run.key  # unset: the same run

import pytest

from sqloss_nc.config import ConfigError, epoch_schedule, expand_sweep, load_config, parse_override


def test_defaults_are_the_papers_section7_setting():
    c = load_config(None, ["data.source=folder"])
    assert c.data.classes == [1, 2] and c.data.train_per_class == 5000 and c.data.test_per_class == 1000
    c = load_config(None)
    # The shipped sample (the default source) has 300 + 50 images per class: unset counts take all.
    assert c.data.source == "sample" and c.data.train_per_class is None and c.data.test_per_class is None
    assert (c.optim.lr, c.optim.momentum, c.optim.weight_decay, c.optim.batch_size, c.optim.epochs) == (0.01, 0.9, 0.01, 128, 1000)
    assert c.model.widths == [32, 64, 128] and c.model.normalization == "batchnorm"


def test_override_values_are_parsed_as_yaml():
    assert parse_override("optim.lr=1e-3") == ("optim.lr", 1e-3)
    assert parse_override("data.classes=[3, 5]") == ("data.classes", [3, 5])
    c = load_config(None, ["optim.lr=0.5", "data.classes=[3,5,7]", "data.train_per_class=null"])
    assert c.optim.lr == 0.5 and c.data.classes == [3, 5, 7] and c.data.train_per_class is None


@pytest.mark.parametrize(
    "override, field",
    [
        ("optim.lrr=1", "optim.lrr"),
        ("optim.lr=-1", "optim.lr"),
        ("optim.lr=0", "optim.lr"),
        ("data.classes=[1,12]", "data.classes"),
        ("data.classes=[1,1]", "data.classes"),
        ("data.label_noise=1.5", "data.label_noise"),
        ("model.init_scale=0", "model.init_scale"),
        ("model.normalization=foo", "model.normalization"),
        ("model.arch=resnet", "model.arch"),
        ("optim.epochs=abc", "optim.epochs"),
        ("optim.schedule=step", "optim"),
        ("loss.kind=exponential", "loss.kind"),
    ],
)
def test_bad_values_name_the_field_in_one_line(override, field):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    msg = str(err.value)
    assert msg.startswith(field) and "\n" not in msg


def test_unknown_key_suggests_the_close_one():
    with pytest.raises(ConfigError, match=r"did you mean 'optim.momentum'"):
        load_config(None, ["optim.momentun=0.5"])


def test_yaml_syntax_error_gives_the_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\noptim:\n  lr: [0.1\n  momentum: 0.9\n")
    with pytest.raises(ConfigError, match=r"line \d+"):
        load_config(p)


def test_sweep_crosses_values_into_unique_readable_ids():
    c = load_config(None, ["sweep={model.init_scale: [0.01, 5], optim.weight_decay: [0.01, 0], seed: [0, 1]}"])
    runs = expand_sweep(c)
    assert len(runs) == 8
    ids = {r.run_id for r in runs}
    assert len(ids) == 8 and "init=0.01_wd=0.01_seed=0" in ids and "init=5_wd=0_seed=1" in ids
    r = next(r for r in runs if r.run_id == "init=5_wd=0_seed=1")
    assert r.config.model.init_scale == 5 and r.config.optim.weight_decay == 0 and r.config.seed == 1 and r.config.sweep == {}


def test_sweep_validates_each_point():
    c = load_config(None, ["sweep={optim.lr: [0.1, -1]}"])
    with pytest.raises(ConfigError, match="optim.lr"):
        expand_sweep(c)


def test_log_schedule_has_first_last_and_about_20_points():
    e = epoch_schedule("log", 1000, 20)
    assert e[0] == 0 and e[-1] == 1000 and 18 <= len(e) <= 22 and e == sorted(set(e))
    assert epoch_schedule("all", 3) == [0, 1, 2, 3]
    assert epoch_schedule([5, 1, 99], 10) == [1, 5]


def test_every_shipped_config_validates_and_expands():
    from pathlib import Path

    paths = sorted((Path(__file__).resolve().parent.parent / "configs").rglob("*.yaml"))
    assert len(paths) >= 6
    for p in paths:
        runs = expand_sweep(load_config(p))
        assert runs and all(r.config.sweep == {} for r in runs), p
        header = p.read_text().splitlines()[0]
        assert header.startswith("#"), f"{p} should open with what it reproduces"

"""Open-set thresholds that follow the gallery size (search/openset.py), identification
calibration (eval/openset_calibration.py), and how identify chooses its threshold."""

from __future__ import annotations

import numpy as np
import pytest

from speakerdb.api import SpeakerDB
from speakerdb.audio import Waveform
from speakerdb.errors import UsageError
from speakerdb.eval.openset_calibration import (IdentifyCalibration, calibrate_identification,
                                                rates)
from speakerdb.search.openset import (ImpostorModel, ImpostorParams, fit_impostors,
                                      impostor_matrix, space_key)
from tests.homes import synthetic_home
from tests.synth import RATE, voice, write_corpus


def simulated(rng, probes_per_speaker=4, speakers=60, mu=0.1, sd_probe=0.04, sd=0.1):
    """A leave-one-out matrix drawn from the model itself (Gaussian tail), own column high."""
    spk = np.repeat(np.arange(speakers), probes_per_speaker)
    m = mu + sd_probe * rng.standard_normal(spk.size)
    agg = m[:, None] + sd * rng.standard_normal((spk.size, speakers))
    agg[np.arange(spk.size), spk] = 0.8
    return agg, spk


def test_fit_recovers_the_parameters_of_data_drawn_from_the_model():
    agg, spk = simulated(np.random.default_rng(0), probes_per_speaker=10, speakers=120)
    m = fit_impostors(agg, spk, replicates=0)
    assert m.point.mu == pytest.approx(0.1, abs=0.01)
    assert m.point.sd_probe == pytest.approx(0.04, abs=0.01)
    assert m.point.tail_sd == pytest.approx(0.1, abs=0.01)
    assert m.point.tail_loc == pytest.approx(0.0, abs=0.01)
    assert (m.speakers, m.probes, m.comparisons) == (120, 1200, 1200 * 119)


def test_modelled_best_of_n_matches_a_monte_carlo_of_the_model():
    rng = np.random.default_rng(1)
    m = ImpostorModel(ImpostorParams(0.1, 0.04, 0.0, 0.1), (), 50, 0, 0, 0.0)
    for n in (5, 40, 300):
        probe = 0.1 + 0.04 * rng.standard_normal((20000, 1))
        best = (probe + 0.1 * rng.standard_normal((20000, n))).max(axis=1)
        t = m.threshold(0.05, n)
        assert np.mean(best >= t) == pytest.approx(0.05, abs=0.006)
        assert m.fpir(t, n) == pytest.approx(0.05, abs=1e-9)


def test_the_threshold_grows_with_the_gallery_and_with_uncertainty():
    agg, spk = simulated(np.random.default_rng(2))
    m = fit_impostors(agg, spk)
    sizes = [1, 10, 100, 1000, 100000]
    ts = [m.threshold(0.01, n) for n in sizes]
    assert ts == sorted(ts) and ts[0] < ts[-1]
    assert m.threshold(0.01, 100) > m.threshold(0.05, 100)
    point = ImpostorModel(m.point, (), m.speakers, m.probes, m.comparisons, 0.0)
    assert m.threshold(0.01, 100) > point.threshold(0.01, 100)  # the bootstrap bound


def test_impostor_statistics_round_trip_and_refuse_garbage():
    agg, spk = simulated(np.random.default_rng(3), speakers=20)
    m = fit_impostors(agg, spk, replicates=5, source="twenty")
    again = ImpostorModel.from_dict(m.to_dict())
    assert again.threshold(0.01, 77) == pytest.approx(m.threshold(0.01, 77), abs=1e-12)
    assert again.source == "twenty" and again.speaks_for(80) and not again.speaks_for(81)
    with pytest.raises(UsageError, match="impostor statistics"):
        ImpostorModel.from_dict({"point": {"mu": 1}})
    with pytest.raises(UsageError, match="FPIR"):
        m.threshold(1.5, 10)
    with pytest.raises(UsageError, match="gallery size"):
        m.threshold(0.01, 0)
    with pytest.raises(UsageError, match="at least 3 speakers"):
        fit_impostors(agg[:8, :2], spk[:8] % 2)
    assert space_key("asnorm", "topk:3", 256) == "asnorm/topk:3/256"


def test_rates_on_a_hand_made_matrix():
    agg = np.array([[0.9, 0.2, 0.5],    # known, right, best other 0.5
                    [0.3, 0.7, 0.6],    # known, right
                    [0.4, np.nan, 0.1],  # own gallery empty: unknown only
                    [0.2, 0.1, 0.35]])  # known but an impostor (0.2) is close
    spk = np.array([0, 1, 1, 2])
    r = rates(agg, spk, 0.55)
    # best impostor per probe: 0.5, 0.6, 0.4, 0.2 -> one at or above 0.55
    assert r["fpir"] == pytest.approx(1 / 4)
    # known: probes 0, 1, 3; hits: 0 (0.9), 1 (0.7); probe 3 own 0.35 < 0.55
    assert r["dir"] == pytest.approx(2 / 3)
    assert (r["unknown_probes"], r["known_probes"]) == (4, 3)
    imp = impostor_matrix(agg, spk)
    assert np.isnan(imp[0, 0]) and imp[0, 1] == 0.2


def test_identify_calibration_round_trip():
    agg, spk = simulated(np.random.default_rng(4), speakers=15)
    cal = calibrate_identification(agg, spk, 0.02, aggregation="topk:2", dim=128)
    again = IdentifyCalibration.from_dict(cal.to_dict())
    assert again.threshold_at(40) == pytest.approx(cal.threshold_at(40), abs=1e-12)
    assert again.method == "fpir=0.02" and again.aggregation == "topk:2" and again.dim == 128
    assert cal.threshold == pytest.approx(cal.threshold_at(15), abs=1e-12)
    with pytest.raises(UsageError, match="FPIR"):
        calibrate_identification(agg, spk, 0.0)


# identify ------------------------------------------------------------------------------------
def wave(speaker, utterance, seconds=1.5):
    return Waveform(voice(speaker, utterance, seconds), RATE)


@pytest.fixture(scope="module")
def many_home(tmp_path_factory, spectral_embedder):
    return synthetic_home(tmp_path_factory.mktemp("openset"), 12, 3, spectral_embedder)


@pytest.fixture
def many_db(many_home, tmp_path, spectral_embedder):
    import shutil

    home = tmp_path / "home"
    shutil.copytree(many_home, home)
    with SpeakerDB.open(home, embedder=spectral_embedder) as db:
        yield db


def test_identify_learns_impostor_statistics_from_the_database(many_db):
    from speakerdb.search.thresholds import learn_impostors

    r = many_db.identify(wave(1, 50))
    want = learn_impostors(many_db, "none", "max", 3, 256).threshold(0.01, 12)
    assert r.threshold == pytest.approx(want, abs=1e-12)
    assert r.threshold_source.startswith("learned fpir=0.01 for 12 speakers (learned from 12 ")


def test_identify_follows_the_gallery_size_of_a_calibration(many_db, tmp_path):
    cal = many_db.calibrate()
    r = many_db.identify(wave(1, 50))
    assert r.threshold == pytest.approx(cal.threshold_at(12), abs=1e-12)
    assert r.threshold_source == "calibrated fpir=0.01 for 12 speakers (36 unknown, 36 known " \
                                 "probes)"
    write_corpus(tmp_path / "more", speakers=6, utterances=2, first_speaker=12)
    many_db.ingest([tmp_path / "more"])
    r = many_db.identify(wave(1, 50))
    assert r.threshold == pytest.approx(cal.threshold_at(18), abs=1e-12)
    assert r.threshold > cal.threshold
    assert r.threshold_source.startswith("calibrated fpir=0.01 for 18 speakers")
    assert "grew past" not in r.threshold_source
    assert many_db.stats()["identify_calibrations"]["none/max/256"]["speaks_for_now"] is True


def test_a_database_grown_past_its_calibration_says_so(many_db):
    many_db.calibrate()
    stored = many_db.store.get_setting("identify_calibrations")
    stored["none/max/256"]["model"]["speakers"] = 2  # as if it was made at 2 speakers
    many_db.store.set_setting("identify_calibrations", stored)
    r = many_db.identify(wave(1, 50))
    assert "the database grew past what it speaks for" in r.threshold_source
    state = many_db.stats()["identify_calibrations"]["none/max/256"]
    assert state["speaks_for_now"] is False and state["speaks_for_speakers"] == 8


def test_a_models_shipped_statistics_are_its_default(many_home, tmp_path):
    import shutil

    from speakerdb.model.spectral import SpectralEmbedder

    agg, spk = simulated(np.random.default_rng(5), speakers=30)
    stats = fit_impostors(agg, spk, replicates=4)
    emb = SpectralEmbedder()
    emb.impostor_stats = {"none/max/256": stats.to_dict()}
    shutil.copytree(many_home, tmp_path / "home")
    with SpeakerDB.open(tmp_path / "home", embedder=emb) as db:
        r = db.identify(wave(2, 50))
        assert r.threshold == pytest.approx(stats.threshold(0.01, 12), abs=1e-12)
        assert r.threshold_source == "model default fpir=0.01 for 12 speakers"
        other = db.identify(wave(2, 50), score_norm="asnorm")  # no shipped asnorm statistics
        assert other.threshold_source.startswith("learned fpir=0.01 for 12 speakers")


def test_calibrate_fpir_and_far_are_exclusive(many_db):
    with pytest.raises(UsageError, match="not both"):
        many_db.calibrate(0.01, fpir=0.01)
    with pytest.raises(UsageError, match="FPIR"):
        many_db.calibrate(fpir=1.0)


def test_the_default_models_shipped_statistics():
    """campplus ships impostor statistics for every rule and score normalisation at 256-D;
    their thresholds rise with the gallery and sit where speech-dev put them."""
    from speakerdb.model.registry import campplus_impostor_stats

    stats = campplus_impostor_stats()
    rules = ("max", "mean", "top2", "topk:3", "centroid")
    assert set(stats) == {space_key(n, r, 256) for n in ("none", "asnorm") for r in rules}
    for key, d in stats.items():
        m = ImpostorModel.from_dict(d)
        ts = [m.threshold(0.01, n) for n in (10, 100, 1000, 10000)]
        assert ts == sorted(ts), key
        assert m.speakers == 63 and len(m.replicates) >= 30
    plain = ImpostorModel.from_dict(stats["none/max/256"])
    assert 0.45 < plain.threshold(0.01, 42) < 0.65  # cosine: between impostors and genuines


def test_learned_statistics_are_kept_and_learned_again_as_the_database_grows(many_db,
                                                                             tmp_path):
    from speakerdb.search.thresholds import LEARNED_KEY

    first = many_db.identify(wave(1, 50))
    kept = many_db.store.get_setting(LEARNED_KEY)["none/max/256"]
    assert kept["at_speakers"] == 12
    write_corpus(tmp_path / "two", speakers=2, utterances=2, first_speaker=12)
    many_db.ingest([tmp_path / "two"])  # 14 speakers: within 1.25x, the kept ones serve
    again = many_db.identify(wave(1, 50))
    assert many_db.store.get_setting(LEARNED_KEY)["none/max/256"] == kept
    assert again.threshold_source.startswith("learned fpir=0.01 for 14 speakers (learned "
                                             "from 12 speakers")
    assert again.threshold > first.threshold
    write_corpus(tmp_path / "more", speakers=4, utterances=2, first_speaker=14)
    many_db.ingest([tmp_path / "more"])  # 18 > 12 x 1.25: learned again
    grown = many_db.identify(wave(1, 50))
    assert many_db.store.get_setting(LEARNED_KEY)["none/max/256"]["at_speakers"] == 18
    assert "learned from 18 speakers" in grown.threshold_source

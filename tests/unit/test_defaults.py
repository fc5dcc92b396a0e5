"""The command line takes identify's defaults from speakerdb.config."""

import inspect

from speakerdb.config import DEFAULT_AGG_K, DEFAULT_SHORTLIST, DEFAULT_TOP_K, CascadeConfig


def test_identify_cli_defaults_are_the_configs():
    from speakerdb.cli.identify import identify

    params = inspect.signature(identify).parameters
    got = {name: params[name].default for name in ("k64", "k128", "k192", "top_k", "agg_k")}
    cfg = CascadeConfig()
    assert (got["k64"], got["k128"], got["k192"]) == cfg.shortlist
    assert (got["top_k"], got["agg_k"]) == (cfg.top_k, cfg.agg_k)
    assert (got["k64"], got["k128"], got["k192"]) == DEFAULT_SHORTLIST == (3000, 3000, 100)
    assert (got["top_k"], got["agg_k"]) == (DEFAULT_TOP_K, DEFAULT_AGG_K) == (5, 3)


def test_server_documents_the_configs_top_k():
    from speakerdb.server.routes import DEFAULT_TOP_K as served

    assert served == CascadeConfig().top_k == 5


def test_identify_options_are_keyword_only():
    import inspect

    from speakerdb.api import SpeakerDB

    params = list(inspect.signature(SpeakerDB.identify).parameters.values())
    assert [p.name for p in params[:2]] == ["self", "audio"]
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[2:])

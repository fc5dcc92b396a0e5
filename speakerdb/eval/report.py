"""Plain-text tables of an evaluation report (the ``--json`` document's text form)."""

from __future__ import annotations

__all__ = ["format_report"]


def _cell(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def _verification(doc: dict) -> list[str]:
    lines = [f"{doc['trials']} trials ({doc['targets']} target, {doc['nontargets']} non-target)"]
    conds = list(dict.fromkeys(c for m in doc["models"] for c in m["conditions"]))
    for cond in conds:
        lines += ["", f"condition {cond}: EER % / minDCF p=0.01 / minDCF p=0.05"]
        dims = sorted({int(d) for m in doc["models"]
                       for d in m["conditions"][cond]["dims"]})
        head = f"{'model':<34} {'norm':<7}" + "".join(f"{str(d) + '-D':>22}" for d in dims)
        lines.append(head)
        for m in doc["models"]:
            c = m["conditions"][cond]
            norms = list(dict.fromkeys(n for d in c["dims"].values() for n in d))
            for norm in norms:
                row = f"{m['model']['name'][:34]:<34} {norm:<7}"
                for d in dims:
                    r = c["dims"].get(str(d), {}).get(norm)
                    row += (f"{'-':>22}" if r is None else
                            f"{r['eer']:>8.2f} {r['min_dcf_0.01']:>6.3f} {r['min_dcf_0.05']:>6.3f}")
                lines.append(row)
            if c["skipped"]:
                lines.append(f"  {c['skipped']} trials skipped: {'; '.join(c['errors'][:2])}")
    return lines


def _identification(doc: dict) -> list[str]:
    g = doc.get("gallery", {})
    lines = [f"gallery: {g.get('speakers')} speakers, {g.get('segments')} segments; "
             f"model {doc.get('model')}"]
    for cond, c in doc["conditions"].items():
        lines += ["", f"condition {cond}: {c.get('known')} known and {c.get('unknown')} unknown "
                      f"probes, {c.get('failed', 0)} failed"]
        lines.append(f"{'dim':>5} {'rule':<9} {'top-1':>7} {'top-5':>7} "
                     f"{'DIR@1%':>8} {'DIR@10%':>8}")
        for d, rules in c["dims"].items():
            for rule, r in rules.items():
                dirs = r.get("dir") or {}
                lines.append(f"{d:>5} {rule:<9} {_cell(r.get('top1'), '7.3f')} "
                             f"{_cell(r.get('top5'), '7.3f')} "
                             f"{_cell(dirs.get('0.01'), '8.3f')} {_cell(dirs.get('0.1'), '8.3f')}")
        for d, rules in c["dims"].items():
            for rule, r in rules.items():
                op = r.get("operating_point")
                if op:
                    lines.append(f"identify's operating point ({d}-D {rule}): threshold "
                                 f"{_cell(op['threshold'], '.4f')} [{op['threshold_source']}]: "
                                 f"FPIR {_cell(op['fpir'], '.4f')} on {op['unknown']} unknown, "
                                 f"DIR {_cell(op['dir'], '.4f')} on {op['known']} known probes")
        for n, per in c.get("gallery_sizes", {}).items():
            if "note" in per:
                lines.append(f"gallery of {n} speakers: {per['note']}")
                continue
            for rule, r in per.items():
                lines.append(f"gallery of {n} speakers ({rule}, {r['draws']} draws): threshold "
                             f"{_cell(r['threshold'], '.4f')}, FPIR {_cell(r['fpir'], '.4f')} "
                             f"on {r['unknown']}, DIR {_cell(r['dir'], '.4f')} on {r['known']}")
        cas = c.get("cascade")
        if cas:
            lines.append("cascade vs exhaustive: " + ", ".join(
                f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in cas.items()
                if not isinstance(v, (dict, list))))
    return lines


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def _conversations(doc: dict) -> list[str]:
    lines = [f"{doc['conversations']} conversations of the {doc['split']} split's "
             f"{doc['speakers']} speakers ({doc['enrolled']} enrolled); model {doc['model']}, "
             f"vad {doc['vad']}, collar {doc['collar_s']} s",
             "", f"{'speakers':<9} {'overlap':<9} {'DER %':>7} {'missed':>7} {'f.alarm':>7} "
                 f"{'confus.':>7} {'ref. s':>8}"]
    for g, d in doc["der"].items():
        for k, r in (("excluded", d["overlap_excluded"]), ("included", d["overlap_included"])):
            lines.append(f"{g:<9} {k:<9} {_pct(r['der']):>7} {_pct(r['missed']):>7} "
                         f"{_pct(r['false_alarm']):>7} {_pct(r['confusion']):>7} "
                         f"{r['reference_s']:>8.1f}")
    lines += ["", "speakers enrolled: share of speech named right (enrolled) / called unknown "
                  "(others) / given a database name (others)"]
    for plan, n in doc["naming"].items():
        lines.append(f"{plan:<5} enrolled {_pct(n['enrolled_named_right']):>6} % of "
                     f"{n['enrolled_speech_s']:.0f} s; others unknown "
                     f"{_pct(n['held_out_called_unknown']):>6} %, named "
                     f"{_pct(n['held_out_given_a_name']):>5} % of {n['held_out_speech_s']:.0f} s")
    sp = doc["speed"]
    lines += ["", f"speed: {sp['seconds']} s for {sp['audio_s']} s of audio "
                  f"({sp['real_time_factor']} x real time)"]
    return lines


def format_report(doc: dict) -> str:
    if doc.get("mode") == "conversations":
        return "\n".join(_conversations(doc))
    body = _verification(doc) if doc.get("mode") == "verification" else _identification(doc)
    if doc.get("plots"):
        body += ["", "plots: " + ", ".join(doc["plots"])]
    return "\n".join(body)

"""Four p2e processes writing one registry at once: no lost records, no 'database is locked'."""

SYNTH = ("curate", "synth", "-n", "3", "--frames", "5", "--size", "16")


def run_together(case, commands, home):
    procs = [case.start(*args, home=home) for args in commands]
    runs = [case.finish(proc, args) for proc, args in zip(procs, commands)]
    for run in runs:
        assert "locked" not in run.stderr, run
    return runs


def test_four_writers_on_a_new_registry(case):
    """Four processes create the same registry and write different effects' clips into it."""
    home = case.new_home()
    effects = ["melt", "invert", "zoom-in", "spin-cw"]
    for run in run_together(case, [(*SYNTH, "--effects", e) for e in effects], home):
        case.expect(run, 0)
    listed = case.p2e("ls", "--json", home=home).json()
    assert sorted(r["name"] for r in listed if r["kind"] == "effect") == sorted(effects)
    assert sum(r["kind"] == "clip" for r in listed) == 4 * 3
    report = case.expect(case.p2e("doctor", "--json", home=home), 0).json()
    assert report["ok"] and report["files"] == 12 and not report["orphans"] and not report["temp_files"]


def test_four_writers_adding_the_same_clips(case):
    """The same synth four times at once: record dedupe holds across processes (one record per clip).
    The losers' copies of a clip are orphan files (safetensors orders metadata differently in each
    process, so the bytes differ) that `doctor --fix` reclaims."""
    for run in run_together(case, [(*SYNTH, "--effects", "melt")] * 4, case.home):
        case.expect(run, 0)
    clips = [r for r in case.p2e("ls", "clip", "--json").json() if r["data"].get("effect") == "melt"]
    assert len(clips) == 3 and len(case.p2e("ls", "effect", "--json").json()) == 2  # melt and the seed effect
    case.expect(case.p2e("doctor", "--fix"), 0)
    report = case.expect(case.p2e("doctor", "--json"), 0).json()
    assert report["ok"] and not report["orphans"] and report["files"] == 2 + 3


def test_four_writers_racing_for_one_name(case, world):
    """Four `base add` of one name at once: exactly one wins, the others get a clear error."""
    runs = run_together(case, [("base", "add", "wan", "--path", world)] * 4, case.home)
    assert sorted(r.code for r in runs) == [0, 2, 2, 2]
    for run in runs:
        case.expect(run, run.code, *(["a base named 'wan' already exists"] if run.code else []))
    assert [b["name"] for b in case.p2e("base", "ls", "--json").json()] == ["wan"]

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_completion_files_are_up_to_date():
    spec = importlib.util.spec_from_file_location("generate", ROOT / "completions" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for shell in module.SHELLS:
        path = ROOT / "completions" / f"p2e.{shell}"
        assert path.read_text() == module.completion_script(shell), f"{path} is stale: run python completions/generate.py"

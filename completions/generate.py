"""Write completions/p2e.{bash,zsh,fish} from the Typer app: python completions/generate.py

The scripts call back into `p2e` (env var _P2E_COMPLETE), so completions always follow the
installed commands; tests/unit/test_completions.py fails when these files are stale.
"""

from __future__ import annotations

from pathlib import Path

SHELLS = ("bash", "zsh", "fish")
HERE = Path(__file__).resolve().parent


def completion_script(shell: str) -> str:
    from typer._completion_shared import get_completion_script

    return get_completion_script(prog_name="p2e", complete_var="_P2E_COMPLETE", shell=shell).strip() + "\n"


def main() -> None:
    for shell in SHELLS:
        (HERE / f"p2e.{shell}").write_text(completion_script(shell))
        print(f"wrote {HERE / f'p2e.{shell}'}")


if __name__ == "__main__":
    main()

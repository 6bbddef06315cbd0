#!/usr/bin/python3
"""readme.py -- put the benchmark fragment into README.md.

  /usr/bin/python3 bench/tools/readme.py README.md bench/results/latest/readme.md

Replaces what lies between the markers
  <!-- bench:begin -->
  <!-- bench:end -->
in README.md with the fragment (summarize.py writes it from a run; run.sh
--publish calls this). Fails if the markers are missing, so that a figure
never lands anywhere else.
"""
import sys

BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def main():
    readme, frag = sys.argv[1], sys.argv[2]
    with open(readme) as f:
        text = f.read()
    with open(frag) as f:
        body = f.read().strip("\n")
    a, b = text.find(BEGIN), text.find(END)
    if a < 0 or b < a:
        print(f"readme.py: no {BEGIN} ... {END} in {readme}", file=sys.stderr)
        return 1
    text = text[: a + len(BEGIN)] + "\n" + body + "\n" + text[b:]
    with open(readme, "w") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

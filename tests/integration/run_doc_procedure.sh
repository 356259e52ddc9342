#!/usr/bin/env bash
# Runs the shell procedure written in a markdown document, exactly as a reader would type it.
#
#   tests/integration/run_doc_procedure.sh DOC.md
#
# Every fenced block opened by a line that is exactly ```sh is taken, in document order, up to its
# closing ``` line; the blocks are joined into one script that bash runs under `set -euo pipefail`
# with this process's environment. Blocks fenced any other way (```text, ```console, ...) are prose
# for the reader and are never run. Exits with the script's status (2 if the document has no ```sh
# block or cannot be read).
set -euo pipefail

doc=${1:?usage: run_doc_procedure.sh DOC.md}
[ -r "$doc" ] || { echo "run_doc_procedure: cannot read $doc" >&2; exit 2; }

script=$(mktemp "${TMPDIR:-/tmp}/doc-procedure.XXXXXX")
trap 'rm -f "$script"' EXIT

{
  printf 'set -euo pipefail\n'
  in_block=0
  blocks=0
  lineno=0
  while IFS= read -r line || [ -n "$line" ]; do
    lineno=$((lineno + 1))
    line=${line%$'\r'}
    if [ "$in_block" = 0 ]; then
      if [ "$line" = '```sh' ]; then
        in_block=1
        blocks=$((blocks + 1))
        printf '# --- block %d (line %d of %s)\n' "$blocks" "$lineno" "$doc"
      fi
    elif [ "$line" = '```' ]; then
      in_block=0
    else
      printf '%s\n' "$line"
    fi
  done <"$doc"
  if [ "$in_block" = 1 ]; then
    echo "run_doc_procedure: unterminated \`\`\`sh block in $doc" >&2
    exit 2
  fi
  if [ "$blocks" = 0 ]; then
    echo "run_doc_procedure: no \`\`\`sh block in $doc" >&2
    exit 2
  fi
} >"$script"

status=0
bash "$script" || status=$?
exit "$status"

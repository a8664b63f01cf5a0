#!/usr/bin/env bash
# `regkit cleanup` for CI jobs: the GitHub Action (action.yml) and the GitLab CI component
# (templates/cleanup.yml) run this, and release archives ship it as `regkit-ci-cleanup`. A dry run unless
# CLEANUP_DRY_RUN=false; the per-tag results become a Markdown summary (GitHub's job summary, a GitLab
# artifact) and the JSON Lines stay in CLEANUP_REPORT. Exits with regkit's exit code (README: exit codes),
# 2 for a bad input here.
#
# Inputs (environment):
#   CLEANUP_REPOSITORIES  repositories, separated by spaces or newlines (required)
#   CLEANUP_DRY_RUN       true (default) or false; false deletes (--yes)
#   CLEANUP_KEEP_LAST, CLEANUP_OLDER_THAN, CLEANUP_KEEP_LIST   one value each (optional)
#   CLEANUP_MATCH, CLEANUP_EXCLUDE   regexes, one per line (optional)
#   CLEANUP_UNTAGGED      true to also remove untagged manifests (default false)
#   CLEANUP_ARGS          more regkit options, split on whitespace (optional)
#   CLEANUP_REPORT        where the JSON Lines go (default regkit-cleanup.jsonl)
#   CLEANUP_SUMMARY       a file the Markdown summary is appended to (default: printed only)
#   REGKIT                the regkit binary (default: regkit on PATH)
set -uo pipefail

fail_input() {
  echo "regkit-ci-cleanup: $*" >&2
  exit 2
}
bool() { # name value default
  local value="${2:-$3}"
  case "$value" in
    true | false) printf '%s' "$value" ;;
    *) fail_input "$1 must be true or false, not '$value'" ;;
  esac
}

regkit="${REGKIT:-regkit}"
dry_run="$(bool dry-run "${CLEANUP_DRY_RUN:-}" true)" || exit 2
untagged="$(bool untagged "${CLEANUP_UNTAGGED:-}" false)" || exit 2
report="${CLEANUP_REPORT:-regkit-cleanup.jsonl}"
read -r -d '' -a repositories <<<"${CLEANUP_REPOSITORIES:-}"
((${#repositories[@]})) || fail_input "no repositories given (e.g. registry.example.com/team/app)"
command -v jq >/dev/null 2>&1 || fail_input "jq is needed to write the summary: install it first"

args=(--output json cleanup)
if [ "$dry_run" = true ]; then args+=(--dry-run); else args+=(--yes); fi
[ "$untagged" = true ] && args+=(--untagged)
[ -n "${CLEANUP_KEEP_LAST:-}" ] && args+=(--keep-last "$CLEANUP_KEEP_LAST")
[ -n "${CLEANUP_OLDER_THAN:-}" ] && args+=(--older-than "$CLEANUP_OLDER_THAN")
[ -n "${CLEANUP_KEEP_LIST:-}" ] && args+=(--keep-list "$CLEANUP_KEEP_LIST")
while IFS= read -r regex; do [ -n "$regex" ] && args+=(--match "$regex"); done <<<"${CLEANUP_MATCH:-}"
while IFS= read -r regex; do [ -n "$regex" ] && args+=(--exclude "$regex"); done <<<"${CLEANUP_EXCLUDE:-}"
read -r -d '' -a extra <<<"${CLEANUP_ARGS:-}"
args+=("${extra[@]}" -- "${repositories[@]}")

errors="$(mktemp)"
trap 'rm -f "$errors"' EXIT
"$regkit" "${args[@]}" >"$report" 2>"$errors"
status=$?
cat "$errors" >&2

# The Markdown: counts, then every row the policy did not keep (at most 500, the rest are in the report),
# then the notes and, when regkit failed, its error lines.
summary="$(
  if [ "$dry_run" = true ]; then
    echo "## regkit cleanup: dry run, nothing was deleted"
  else
    echo "## regkit cleanup"
  fi
  echo
  jq -rs '
    def cell: tostring | gsub("\\|"; "\\|") | gsub("\n"; " ");
    (map(select(.summary)) | last | .summary) as $s
    | (map(select(.repository and .result and .result != "kept"))) as $acted
    | if $s then
        "| repositories | seen | kept | planned | deleted | untagged | absent | failed |",
        "|---|---|---|---|---|---|---|---|",
        "| \($s.repositories // 0) | \($s.seen // 0) | \($s.kept // 0) | \($s.planned // 0) | \($s.deleted // 0) | \($s.untagged // 0) | \($s.absent // 0) | \($s.failed // 0) |"
      else empty end,
      if ($acted | length) > 0 then
        "",
        "| repository | tag | digest | result | reason | error |",
        "|---|---|---|---|---|---|",
        ($acted[:500][] | "| \(.repository | cell) | \(.tag // "" | cell) | \(.digest // "" | cell) | \(.result | cell) | \(.reason // "" | cell) | \(.error // "" | cell) |"),
        if ($acted | length) > 500 then "", "… and \(($acted | length) - 500) more: see the report." else empty end
      else empty end,
      (map(select(.repository_note)) | if length > 0 then "", (.[] | "- \(.repository_note | tojson)") else empty end)
  ' "$report" 2>/dev/null
  if [ "$status" -ne 0 ]; then
    echo
    echo "regkit exited with $status:"
    echo
    echo '```'
    cat "$errors"
    echo '```'
  fi
)"
printf '%s\n' "$summary"
[ -n "${CLEANUP_SUMMARY:-}" ] && printf '%s\n' "$summary" >>"$CLEANUP_SUMMARY"
exit "$status"

#!/usr/bin/env bash
# Fails if any C++ source of ours differs from .clang-format (run scripts/format.sh to fix).
set -euo pipefail
cd "$(dirname "$0")/.."
CF="${CLANG_FORMAT:-clang-format}"
mapfile -t files < <(git ls-files '*.h' '*.cpp' 2>/dev/null || find common config routing metrics proxy sim tests bench -name '*.h' -o -name '*.cpp')
"$CF" --dry-run --Werror "${files[@]}"
echo "check-format: ${#files[@]} files formatted"

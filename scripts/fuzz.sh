#!/bin/bash
# Builds every libFuzzer target in fuzz/ with clang (ASan + UBSan) and runs
# each for a while on a copy of its seed corpus.
#
#   scripts/fuzz.sh [--seconds N] [--jobs J] [--keep-corpus] [--build-only] [TARGET...]
#
# TARGET is a file's name with or without "fuzz_" and ".c" (smtp_cmd,
# fuzz_smtp_cmd); none means all of fuzz/fuzz_*.c. Each target runs N
# seconds (30 by default), J at a time (2). The seed corpus in
# fuzz/corpus/NAME is only read: with --keep-corpus the inputs that found
# new coverage are merged back into it. A crash, leak, timeout or
# out-of-memory input is saved under fuzz/crashes/NAME/.
#
# The project's sources (all of src/ but src/cli/main.c) are compiled once
# into a static library with coverage instrumentation, and each target is
# linked against it. The build goes to $FUZZ_BUILD_DIR (build-fuzz/ in the
# repository by default) and is incremental.
#
# Exit status: 0 when every target built and ran without finding anything;
# 1 otherwise; 2 on a usage error.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

seconds=30
jobs=2
keep=0
build_only=0
targets=()
while [ $# -gt 0 ]; do
	case "$1" in
	--seconds) seconds=${2:?--seconds needs a value}; shift 2 ;;
	--jobs) jobs=${2:?--jobs needs a value}; shift 2 ;;
	--keep-corpus) keep=1; shift ;;
	--build-only) build_only=1; shift ;;
	-h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	-*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
	*) t=${1%.c}; t=${t#fuzz/}; t=${t#fuzz_}; targets+=("$t"); shift ;;
	esac
done
case "$seconds$jobs" in *[!0-9]*) echo "fuzz.sh: --seconds and --jobs take numbers" >&2; exit 2 ;; esac
if [ ${#targets[@]} -eq 0 ]; then
	for f in fuzz/fuzz_*.c; do
		t=${f#fuzz/fuzz_}
		targets+=("${t%.c}")
	done
fi
for t in "${targets[@]}"; do
	[ -f "fuzz/fuzz_$t.c" ] || { echo "fuzz.sh: no fuzz/fuzz_$t.c" >&2; exit 2; }
done

CC=${CC:-clang}
command -v "$CC" >/dev/null || { echo "fuzz.sh: $CC not found (scripts/install-deps.sh --test)" >&2; exit 1; }
bdir=${FUZZ_BUILD_DIR:-$root/build-fuzz}
mkdir -p "$bdir/obj" "$bdir/bin" "$bdir/log"

version=$(sed -n 's/^project(fulmar VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
san="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
# The targets get the strict warnings; src/ is held to them by the GCC
# build (CMakeLists.txt), and clang's extra opinions about it (OpenSSL's
# macros and -Wcast-qual, say) are not this script's business: -w there.
base="-std=c17 -D_GNU_SOURCE -DFULMAR_VERSION=\"$version\" -g -O1 $san -Isrc"
cflags="$base -Wall -Wextra -Werror -Wshadow -Wcast-qual -Wmissing-prototypes -Wvla -Wformat=2"
pkgs="libevent libevent_pthreads libconfig zlib libcares openssl"
libs="$(pkg-config --libs $pkgs)"
if pkg-config --exists libxcrypt; then libs="$libs $(pkg-config --libs libxcrypt)"; else libs="$libs -lcrypt"; fi
libs="$libs -lpthread"
export base CC bdir

# ---- the library: src/ with coverage instrumentation ----
# An object is rebuilt when its source, or any header of src/, is newer.
newest_h=$(find src -name '*.h' -printf '%T@\n' | sort -n | tail -1)
stale=()
while IFS= read -r src; do
	obj="$bdir/obj/$(echo "${src#src/}" | tr / _).o"
	if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] ||
	   [ "$(stat -c %Y "$obj")" -lt "${newest_h%.*}" ]; then
		stale+=("$src")
	fi
done < <(find src -name '*.c' ! -path src/cli/main.c | sort)
if [ ${#stale[@]} -gt 0 ]; then
	echo "fuzz.sh: compiling ${#stale[@]} source files of src/ with $CC"
	printf '%s\n' "${stale[@]}" | xargs -P "$jobs" -I{} sh -c \
		'o="$bdir/obj/$(echo "$1" | cut -c5- | tr / _).o"; $CC $base -w -fsanitize=fuzzer-no-link -c "$1" -o "$o" || { rm -f "$o"; exit 1; }' _ {} ||
		{ echo "fuzz.sh: the library did not build" >&2; exit 1; }
	rm -f "$bdir/libfulmar_fuzz.a"
fi
if [ ! -f "$bdir/libfulmar_fuzz.a" ]; then
	ar rcs "$bdir/libfulmar_fuzz.a.tmp" "$bdir"/obj/*.o
	mv "$bdir/libfulmar_fuzz.a.tmp" "$bdir/libfulmar_fuzz.a"
fi

# ---- the targets ----
failed_build=()
for t in "${targets[@]}"; do
	bin="$bdir/bin/fuzz_$t"
	if [ -x "$bin" ] && [ ! "fuzz/fuzz_$t.c" -nt "$bin" ] && [ ! "$bdir/libfulmar_fuzz.a" -nt "$bin" ]; then
		continue
	fi
	# shellcheck disable=SC2086
	if ! $CC $cflags -fsanitize=fuzzer "fuzz/fuzz_$t.c" "$bdir/libfulmar_fuzz.a" $libs \
		-o "$bin" 2>"$bdir/log/build_$t.txt"; then
		cat "$bdir/log/build_$t.txt" >&2
		rm -f "$bin"
		failed_build+=("$t")
	fi
done
[ "$build_only" = 1 ] && { [ ${#failed_build[@]} -eq 0 ] && exit 0; echo "fuzz.sh: build failed: ${failed_build[*]}" >&2; exit 1; }

# ---- runs, $jobs at a time ----
# A target's corpus: fuzz/corpus/NAME, or for NAME_record fuzz/corpus/NAME.
corpus_of() {
	if [ -d "fuzz/corpus/$1" ]; then echo "fuzz/corpus/$1"
	elif [ -d "fuzz/corpus/${1%_record}" ]; then echo "fuzz/corpus/${1%_record}"
	else echo ""; fi
}

run_one() {
	local t=$1 bin="$bdir/bin/fuzz_$1" work="$bdir/run/$1" seeds
	seeds=$(corpus_of "$t")
	rm -rf "$work"
	mkdir -p "$work/corpus" "$work/artifacts"
	[ -n "$seeds" ] && cp "$seeds"/* "$work/corpus/" 2>/dev/null || true
	ls "$work/corpus" | wc -l >"$work/seeds"
	local rc=0
	# -rss_limit_mb: the sanitizers' own overhead included.
	"$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2560 \
		-print_final_stats=1 -artifact_prefix="$work/artifacts/" \
		"$work/corpus" >"$work/log" 2>&1 || rc=$?
	echo "$rc" >"$work/rc"
	if [ "$keep" = 1 ] && [ -n "$seeds" ]; then
		"$bin" -merge=1 "$seeds" "$work/corpus" >>"$work/log" 2>&1 || true
	fi
}

rm -rf "$bdir/run"
running=0
for t in "${targets[@]}"; do
	[ -x "$bdir/bin/fuzz_$t" ] || continue
	if [ "$running" -ge "$jobs" ]; then
		wait -n || true
		running=$((running - 1))
	fi
	run_one "$t" &
	running=$((running + 1))
done
wait || true

# ---- the table ----
status=0
passed=0
failed=0
printf '%-16s %12s %8s %8s %8s  %s\n' target runs cov ft "new" result
for t in "${targets[@]}"; do
	work="$bdir/run/$t"
	for b in "${failed_build[@]}"; do
		if [ "$b" = "$t" ]; then
			printf '%-16s %12s %8s %8s %8s  %s\n' "$t" - - - - "BUILD FAILED"
			status=1
			failed=$((failed + 1))
			continue 2
		fi
	done
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
	cov=$(grep -o 'cov: [0-9]*' "$work/log" | tail -1 | cut -d' ' -f2 || true)
	ft=$(grep -o 'ft: [0-9]*' "$work/log" | tail -1 | cut -d' ' -f2 || true)
	new=$(( $(ls "$work/corpus" | wc -l) - $(cat "$work/seeds") ))
	result=ok
	if [ "$(cat "$work/rc")" != 0 ] || [ -n "$(ls -A "$work/artifacts")" ]; then
		status=1
		failed=$((failed + 1))
		result="FOUND ($(cat "$work/rc")):"
		mkdir -p "fuzz/crashes/$t"
		for a in "$work"/artifacts/*; do
			[ -e "$a" ] || continue
			cp "$a" "fuzz/crashes/$t/"
			result="$result fuzz/crashes/$t/$(basename "$a")"
		done
		grep -m1 -E 'ERROR: |runtime error|deadly signal' "$work/log" | sed 's/^/    /' >&2 || true
		echo "    log: $work/log" >&2
	fi
	[ "$result" = ok ] && passed=$((passed + 1))
	printf '%-16s %12s %8s %8s %8s  %s\n' "$t" "${runs:-?}" "${cov:-?}" "${ft:-?}" "$new" "$result"
done
echo "fuzz: $passed passed, $failed failed"
exit $status

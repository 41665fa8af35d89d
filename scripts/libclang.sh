# Sourced by scripts/setup.sh. have_libclang [ROOT]: succeeds when a libclang
# that bindgen (clang-sys) can load is installed under ROOT (default /), or
# LIBCLANG_PATH names a directory holding one. clang-sys loads libclang.so,
# libclang-N.so and their versioned names; libclang-cpp.so is the C++ API
# library, which every LLVM install has and which bindgen cannot use.
have_libclang() {
  local root="${1:-}" f base
  local dirs=("$root"/usr/lib/llvm-*/lib "$root"/usr/lib/*-linux-gnu "$root"/usr/lib "$root"/usr/local/lib)
  [ -n "${LIBCLANG_PATH:-}" ] && [ -z "$root" ] && dirs=("$LIBCLANG_PATH" "${dirs[@]}")
  for d in "${dirs[@]}"; do
    for f in "$d"/libclang.so* "$d"/libclang-[0-9]*.so*; do
      [ -e "$f" ] || continue
      base="${f##*/}"
      case "$base" in libclang-cpp*) continue ;; esac
      return 0
    done
  done
  return 1
}

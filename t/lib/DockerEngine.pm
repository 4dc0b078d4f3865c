package DockerEngine;

# The Docker engine as a client of the module: a private dockerd (and the
# containerd it needs), started for one test and stopped with it.
#
#   use Test::More;
#   use lib 't/lib';
#   use RegTest;
#   use DockerEngine;
#
#   my $e = DockerEngine->new;         # plan(skip_all) where dockerd
#                                      # cannot run (see need_dockerd)
#   my ($rc, $out, $err) = $e->docker('push', "127.0.0.1:$port/repo:tag");
#   my $out = $e->docker_ok('a test name', 'pull', ...);   # one assertion
#   $e->load_oci("$tmp/layout", 'v1', 'regtest/img:v1');   # skopeo
#   $e->login("127.0.0.1:$port", $user, $password);        # for auth tests
#   ok($e->stop, 'dockerd stopped');   # also done at END
#
# DockerEngine->new(dockerd_args => [...], log_level => 'debug'): more
# dockerd options (--insecure-registry, --registry-mirror, ...), its log
# level (info).  Dies, after printing both daemons' logs, when dockerd does
# not answer within 60 s.
# $e->dir, sock, host ('unix://...'), containerd_sock (the private
# containerd's, for ctr), cli (the docker binary), env (the
# CLI's environment, for other clients such as docker-compose), config_dir,
# config (parsed config.json: what login stored), logs (the ends of both
# logs, for diag), pids, ping (GET /_ping), inspect($ref) (`docker image
# inspect`, {} when absent), remove_all (every container and image;
# true when none is left).  write_oci_image($dir, $tag, layers => [...])
# and tar_bytes make images (exported on request).
#
# Everything of the engine lives in one directory D, made under /tmp
# (unix socket paths are limited to 108 bytes):
#   D/docker.sock     dockerd's API (-H unix://...): only this socket is
#                     ever used, never /var/run/docker.sock
#   D/data, D/exec    --data-root (vfs layers), --exec-root
#   D/docker.pid      --pidfile
#   D/daemon.json     --config-file: /etc/docker/daemon.json is never
#                     read; it only says where the trust key goes
#   D/key.json        the trust key of dockerd 20.10 (deprecated-key-path),
#                     not /etc/docker/key.json
#   D/containerd/     a private containerd (config, root, state, socket)
#                     given to dockerd with --containerd: dockerd would
#                     otherwise use the host's one whenever
#                     /run/containerd/containerd.sock exists
#   D/config          DOCKER_CONFIG of the CLI: logins (config.json) and
#                     `docker manifest` state never touch ~/.docker
#   D/home            HOME of the CLI and the daemons
#   D/dockerd.log, D/containerd.log
# so engines of parallel tests (prove -j) never share a socket, a pid file,
# a data root or a containerd.
#
# dockerd runs without networking: --bridge=none, --iptables=false,
# --ip6tables=false, --ip-forward=false, --ip-masq=false, and the vfs
# storage driver (plain copies, no overlay mounts).  Docker allows plain
# HTTP to registries in 127.0.0.0/8 by default (its insecure-registries
# list starts with that network), so 127.0.0.1:PORT needs no option.
#
# The CLI: $ENV{REGTEST_DOCKER}, else the one packaged with dockerd
# (/usr/bin/docker of Debian's docker.io) when there is one, else `docker`
# on PATH.  dockerd: $ENV{REGTEST_DOCKERD}, else `dockerd` on PATH.
#
# Stopping (stop(), DESTROY, END): SIGTERM to dockerd, then to containerd,
# SIGKILL to each after a timeout; then whatever is still mounted under D
# (dockerd makes its data root a bind mount of its own) is unmounted and D
# is removed with `rm -rf` (vfs layers are ordinary files, but many);
# stop() is false when something was left mounted, but for
# D/exec/netns/default, dockerd's own network namespace, which it leaves
# mounted once a container ran on the host's network.  Both
# daemons get SIGTERM from the kernel if the test process dies without
# running END (PR_SET_PDEATHSIG).  REGTEST_LEAVE=1 keeps D.

use strict;
use warnings;

use Config;
use Exporter qw(import);
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use IO::Compress::Gzip qw(gzip $GzipError);
use IO::Socket::UNIX;
use JSON::PP ();
use POSIX qw(WNOHANG);
use Scalar::Util qw(weaken);
use Test::More ();

require RegTest;
use RegTools qw(run3 skopeo);

our @EXPORT_OK = qw(need_dockerd write_oci_image tar_bytes);

my $JSON = JSON::PP->new->canonical;
my @ENGINES;

sub _which {
    my ($tool) = @_;

    for my $d (split /:/, ($ENV{PATH} || '') . ':/usr/sbin:/sbin') {
        return "$d/$tool" if $d ne '' && -f "$d/$tool" && -x _;
    }

    return undef;
}

sub dockerd_path { $ENV{REGTEST_DOCKERD} || _which('dockerd') }

sub docker_path {
    return $ENV{REGTEST_DOCKER} if $ENV{REGTEST_DOCKER};
    return '/usr/bin/docker' if -x '/usr/bin/docker';
    return _which('docker');
}

# plan(skip_all) unless dockerd can run here: it needs root (rootless
# dockerd would need rootlesskit and user namespaces), the daemons and the
# CLI.  A missing program is a skip on a developer's machine (make
# deps-test installs it) but a failure under CI, whose .ci/run installs it.

sub need_dockerd {
    Test::More::plan(skip_all => 'dockerd needs root (rootless mode is not'
                                 . ' set up here)')
        unless $> == 0;

    my @missing = grep { !$_->[1] }
        (['dockerd', dockerd_path()], ['docker', docker_path()],
         ['containerd', _which('containerd')], ['runc', _which('runc')]);

    return unless @missing;

    my $what = join(' ', map { $_->[0] } @missing);

    if ($ENV{CI}) {
        Test::More::plan(tests => 1);
        Test::More::fail("docker engine installed (missing: $what; .ci/run"
                         . " installs docker.io)");
        exit 1;
    }

    Test::More::plan(skip_all => "missing: $what (make deps-test installs"
                                 . ' docker.io)');
}

sub new {
    my ($class, %opts) = @_;

    need_dockerd();

    my $dir = tempdir('dk-XXXXXX', DIR => '/tmp', CLEANUP => 0);

    my $self = bless {
        dir     => $dir,
        sock    => "$dir/docker.sock",
        owner   => $$,
        dockerd => dockerd_path(),
        cli     => docker_path(),
    }, $class;

    push @ENGINES, $self;
    weaken($ENGINES[-1]);

    make_path(map { "$dir/$_" } qw(data exec config home tmp containerd));
    RegTest::spew("$dir/daemon.json", "{}\n");
    RegTest::spew("$dir/config/config.json", "{\"auths\": {}}\n");

    $self->{env} = {
        HOME              => "$dir/home",
        TMPDIR            => "$dir/tmp",
        DOCKER_CONFIG     => "$dir/config",
        DOCKER_HOST       => undef,
        DOCKER_CONTEXT    => undef,
        DOCKER_TLS_VERIFY => undef,
        DOCKER_CERT_PATH  => undef,
        DOCKER_API_VERSION => undef,
    };

    eval {
        $self->_start_containerd();
        $self->_start_dockerd(%opts);
        1;
    } or do {
        my $why = $@;
        Test::More::diag("DockerEngine: $why" . $self->logs);
        $self->stop;
        die "DockerEngine: $why";
    };

    return $self;
}

sub dir  { $_[0]{dir} }
sub sock { $_[0]{sock} }
sub containerd_sock { $_[0]{containerd_sock} }
sub host { "unix://$_[0]{sock}" }
sub config_dir { "$_[0]{dir}/config" }

# the environment the CLI runs with (DOCKER_CONFIG, HOME, ...; undef:
# removed), with DOCKER_HOST this engine's socket: for other clients of
# the engine (docker-compose)
sub env { +{ %{ $_[0]{env} }, DOCKER_HOST => $_[0]->host } }
sub cli  { $_[0]{cli} }

# the parsed DOCKER_CONFIG/config.json ({} when it is missing or not JSON)

sub config {
    my ($self) = @_;
    my $text = RegTest::slurp($self->config_dir . '/config.json');
    my $c = eval { $JSON->decode($text) };
    return ref $c eq 'HASH' ? $c : {};
}

sub logs {
    my ($self) = @_;
    my $out = '';

    for my $f ('containerd.log', 'dockerd.log') {
        my $log = RegTest::slurp("$self->{dir}/$f");
        next if $log eq '';
        $log = substr($log, -6000) if length $log > 6000;
        $out .= "==> $f (end) <==\n$log\n";
    }

    return $out;
}

# forks a daemon: its own process group, output to $log, SIGTERM when the
# test process dies (PR_SET_PDEATHSIG)

sub _spawn {
    my ($self, $log, @cmd) = @_;

    my %env = %{ $self->{env} };

    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        setpgrp(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $log;
        open STDERR, '>&', \*STDOUT;

        for my $k (keys %env) {
            defined $env{$k} ? ($ENV{$k} = $env{$k}) : delete $ENV{$k};
        }

        my $prctl = $Config{archname} =~ /^x86_64-linux/ ? 157
                  : $Config{archname} =~ /^aarch64-linux/ ? 167 : 0;
        syscall($prctl, 1, 15) if $prctl;

        exec(@cmd) or POSIX::_exit(127);
    }

    return $pid;
}

sub _start_containerd {
    my ($self) = @_;

    my $c = "$self->{dir}/containerd";
    $self->{containerd_sock} = "$c/c.sock";

    # what dockerd needs of containerd: the content, metadata and task
    # services; no CRI, no snapshotters that would mount

    RegTest::spew("$c/config.toml", <<"EOF");
version = 2
root = "$c/root"
state = "$c/state"
plugin_dir = ""
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "$c/c.sock"

[ttrpc]
  address = "$c/c.sock.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "$c/opt"
EOF

    $self->{containerd_pid} = $self->_spawn("$self->{dir}/containerd.log",
        'containerd', '--config', "$c/config.toml");

    for (1 .. 600) {
        if (waitpid($self->{containerd_pid}, WNOHANG) > 0) {
            undef $self->{containerd_pid};
            die "containerd exited (status " . ($? >> 8) . ")\n";
        }

        return if -S $self->{containerd_sock};

        select undef, undef, undef, 0.05;
    }

    die "containerd did not create $self->{containerd_sock} in 30 s\n";
}

sub _start_dockerd {
    my ($self, %opts) = @_;

    my $d = $self->{dir};

    my @cmd = ($self->{dockerd},
        '--host', $self->host,
        '--data-root', "$d/data",
        '--exec-root', "$d/exec",
        '--pidfile', "$d/docker.pid",
        '--config-file', "$d/daemon.json",
        '--containerd', $self->{containerd_sock},
        '--storage-driver', 'vfs',
        '--bridge', 'none',
        '--iptables=false', '--ip6tables=false',
        '--ip-forward=false', '--ip-masq=false',
        '--userland-proxy=false',
        '--log-level', $opts{log_level} || 'info',
        @{ $opts{dockerd_args} || [] });

    # dockerd of 20.10 writes its trust key to /etc/docker/key.json unless
    # daemon.json says otherwise (there is no such flag); a later dockerd
    # without a trust key refuses the option: then it starts without it

    RegTest::spew("$d/daemon.json",
                  $JSON->encode({ 'deprecated-key-path' => "$d/key.json" }));

    $self->{dockerd_pid} = $self->_spawn("$d/dockerd.log", @cmd);

    for (1 .. 1200) {
        if (waitpid($self->{dockerd_pid}, WNOHANG) > 0) {
            undef $self->{dockerd_pid};

            my $log = RegTest::slurp("$d/dockerd.log");

            if ($log =~ /deprecated-key-path/ && !$self->{no_key_option}++) {
                RegTest::spew("$d/daemon.json", "{}\n");
                $self->{dockerd_pid} = $self->_spawn("$d/dockerd.log", @cmd);
                next;
            }

            die "dockerd exited (status " . ($? >> 8) . ")\n";
        }

        return if -S $self->{sock} && $self->ping;

        select undef, undef, undef, 0.05;
    }

    die "dockerd did not answer on $self->{sock} in 60 s\n";
}

# GET /_ping on the engine's socket: true when it answers OK

sub ping {
    my ($self) = @_;

    my $s = IO::Socket::UNIX->new(Peer => $self->{sock}) or return 0;
    print $s "GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n";

    my $reply = '';
    eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm(5);
        while (sysread($s, my $buf, 4096)) { $reply .= $buf }
        alarm(0);
    };
    alarm(0);
    close $s;

    return $reply =~ m{^HTTP/1\.\d 200 } && $reply =~ /\r\n\r\nOK$/ ? 1 : 0;
}

# the CLI against this engine: (exit status, stdout, stderr).  Options of
# RegTools::run3 (stdin, timeout, merge, env: added to the engine's) after
# a leading hash ref:
#   $e->docker({ stdin => $password }, 'login', ...)

sub docker {
    my ($self, @args) = @_;

    my %o = ref $args[0] eq 'HASH' ? %{ shift @args } : ();

    return run3([$self->{cli}, '--host', $self->host, @args],
                timeout => 180, %o,
                env => { %{ $self->{env} }, %{ $o{env} || {} } });
}

# docker() as one assertion (exit status 0); returns stdout

sub docker_ok {
    my ($self, $name, @args) = @_;

    my ($rc, $out, $err) = $self->docker(@args);

    Test::More::is($rc, 0, $name)
        or Test::More::diag("docker @args\n$out$err");

    return $out;
}

# `docker image inspect`: the parsed object, {} when there is no such image

sub inspect {
    my ($self, $ref) = @_;

    my ($rc, $out) = $self->docker('image', 'inspect', $ref);
    return {} if $rc;

    my $list = eval { $JSON->decode($out) };
    return ref $list eq 'ARRAY' && ref $list->[0] eq 'HASH' ? $list->[0] : {};
}

# every image and container of the engine removed; true when none is left

sub remove_all {
    my ($self) = @_;

    my (undef, $c) = $self->docker('ps', '-aq');
    my @c = split ' ', $c;
    $self->docker('rm', '-f', @c) if @c;

    my (undef, $i) = $self->docker('images', '-aq');
    my %i = map { $_ => 1 } split ' ', $i;
    $self->docker('rmi', '-f', sort keys %i) if %i;

    my (undef, $left) = $self->docker('images', '-aq');
    my (undef, $cleft) = $self->docker('ps', '-aq');

    return $left !~ /\S/ && $cleft !~ /\S/;
}

# An OCI layout's image ($layout:$tag) into the engine as $name (a
# name:tag), with skopeo (docker-daemon: transport, this engine's socket).
# Returns (exit status, output).

sub load_oci {
    my ($self, $layout, $tag, $name) = @_;

    return skopeo('copy', "oci:$layout:$tag", "docker-daemon:$name",
                  '--dest-daemon-host', $self->host);
}

# For the auth tests: `docker login` with the password on stdin, and
# `docker logout`.  Credentials land in this engine's DOCKER_CONFIG
# (config_dir, config()), never in ~/.docker.  (exit status, stdout,
# stderr).

sub login {
    my ($self, $registry, $user, $password) = @_;

    return $self->docker({ stdin => $password }, 'login', '--username', $user,
                         '--password-stdin', $registry);
}

sub logout {
    my ($self, $registry) = @_;
    return $self->docker('logout', $registry);
}

# the process ids of dockerd and containerd while they run

sub pids {
    my ($self) = @_;
    return grep { defined } @{$self}{qw(dockerd_pid containerd_pid)};
}

# SIGTERM, then SIGKILL (to the process group) after $seconds; true when it
# exited on SIGTERM

sub _stop_pid {
    my ($self, $key, $seconds) = @_;

    my $pid = delete $self->{$key} or return 1;

    kill 'TERM', $pid;

    for (1 .. $seconds * 20) {
        return 1 if waitpid($pid, WNOHANG) != 0;
        select undef, undef, undef, 0.05;
    }

    Test::More::diag("DockerEngine: $key $pid still running after"
                     . " ${seconds}s, SIGKILL");
    kill 'KILL', -$pid;
    kill 'KILL', $pid;
    waitpid($pid, 0);

    return 0;
}

# mount points at or under $dir, deepest first

sub mounts_under {
    my ($dir) = @_;

    my @m;

    for my $line (split /\n/, RegTest::slurp('/proc/self/mountinfo')) {
        my $point = (split / /, $line)[4] // next;
        $point =~ s/\\([0-7]{3})/chr(oct $1)/ge;
        push @m, $point if $point eq $dir || index($point, "$dir/") == 0;
    }

    return sort { length $b <=> length $a } @m;
}

# Stops both daemons and removes the directory.  True when each daemon
# exited on SIGTERM in time and no mount was left for us to undo.

sub stop {
    my ($self) = @_;

    return 1 unless $self->{owner} && $self->{owner} == $$;
    return $self->{stopped} if defined $self->{stopped};

    local ($?, $!, $@);

    my $clean = $self->_stop_pid('dockerd_pid', 30);
    $clean = $self->_stop_pid('containerd_pid', 15) && $clean;

    # dockerd binds its own network namespace there for containers on the
    # host's network (--network host) and leaves it when it exits
    my $host_netns = "$self->{dir}/exec/netns/default";
    system('umount', $host_netns)
        if grep { $_ eq $host_netns } mounts_under($self->{dir});

    my @mounts = mounts_under($self->{dir});

    if (@mounts) {
        Test::More::diag("DockerEngine: still mounted: @mounts");
        $clean = 0;

        for my $m (@mounts) {
            system('umount', $m) == 0 or system('umount', '-l', $m);
        }
    }

    if ($ENV{REGTEST_LEAVE}) {
        Test::More::diag("DockerEngine: left $self->{dir}");
    } elsif (!mounts_under($self->{dir})) {
        system('rm', '-rf', '--one-file-system', $self->{dir});
    } else {
        Test::More::diag("DockerEngine: not removing $self->{dir}: mounts");
    }

    return $self->{stopped} = $clean ? 1 : 0;
}

sub DESTROY {
    my ($self) = @_;
    $self->stop if $self->{owner} && $self->{owner} == $$;
}

END {
    for my $e (@ENGINES) {
        $e->stop if $e;
    }
}

###############################################################################
# images without network or image tools: a tar per layer, an OCI layout

# A tar archive (ustar) of $entries, in order: [path, content] for a file
# (mode 0644), [path/] for a directory (0755), [path, content, mode].
# Owner root, mtime $opts{mtime} (default 2026-01-01).

sub tar_bytes {
    my ($entries, %opts) = @_;

    my $mtime = $opts{mtime} // 1767225600;
    my $tar = '';

    for my $e (@$entries) {
        my ($path, $content, $mode) = @$e;
        my $is_dir = $path =~ m{/$};

        $content = '' if $is_dir;
        $mode //= $is_dir ? 0755 : 0644;

        die "tar_bytes: path too long: $path\n" if length $path > 99;

        my $h = pack('a100 a8 a8 a8 a12 a12 a8 a1 a100 a6 a2 a32 a32 a8 a8'
                     . ' a155 a12',
                     $path, sprintf('%07o', $mode), sprintf('%07o', 0),
                     sprintf('%07o', 0), sprintf('%011o', length $content),
                     sprintf('%011o', $mtime), ' ' x 8, $is_dir ? '5' : '0',
                     '', "ustar\0", '00', 'root', 'root', '', '', '', '');

        my $sum = unpack('%32C*', $h);
        substr($h, 148, 8) = sprintf("%06o\0 ", $sum);

        $tar .= $h . $content;
        $tar .= "\0" x ((512 - length($content) % 512) % 512);
    }

    return $tar . ("\0" x 1024);
}

# The architecture name of this machine in OCI's terms

sub oci_arch {
    my $m = (POSIX::uname())[4];
    return { x86_64 => 'amd64', aarch64 => 'arm64', armv7l => 'arm',
             i686 => '386', ppc64le => 'ppc64le', s390x => 's390x' }->{$m}
           // $m;
}

# Writes an OCI image to layout $dir (created unless it exists) under
# $tag: layers => [ [tar entries], ... ] (see tar_bytes), each gzipped;
# config fields: env => [...], cmd => [...], labels => {...},
# workdir => '/'.  Returns { manifest => bytes, digest, config => bytes,
# config_digest, layers => [{ digest, diff_id, size, gz, tar }] }.

sub write_oci_image {
    my ($dir, $tag, %o) = @_;

    make_path("$dir/blobs/sha256");

    my $put = sub {
        my ($bytes) = @_;
        my $d = RegTest::digest($bytes);
        RegTest::spew("$dir/blobs/sha256/" . substr($d, 7), $bytes);
        return $d;
    };

    my @layers;

    for my $entries (@{ $o{layers} || [] }) {
        my $tar = tar_bytes($entries);
        gzip(\$tar => \my $gz, Minimal => 1, Time => 0)
            or die "gzip: $GzipError\n";
        push @layers, { tar => $tar, gz => $gz, diff_id => RegTest::digest($tar),
                        digest => $put->($gz), size => length $gz };
    }

    my $config = $JSON->encode({
        architecture => $o{arch} || oci_arch(),
        os => 'linux',
        created => '2026-01-01T00:00:00Z',
        config => {
            Env => $o{env} || ['PATH=/usr/local/bin:/usr/bin:/bin'],
            Cmd => $o{cmd} || ['/bin/true'],
            Labels => $o{labels} || {},
            WorkingDir => $o{workdir} || '/',
        },
        rootfs => { type => 'layers',
                    diff_ids => [map { $_->{diff_id} } @layers] },
        history => [map { { created => '2026-01-01T00:00:00Z',
                            created_by => "regtest layer $_" } }
                    1 .. @layers],
    });

    my $config_digest = $put->($config);

    my $manifest = $JSON->encode({
        schemaVersion => 2,
        mediaType => 'application/vnd.oci.image.manifest.v1+json',
        config => { mediaType => 'application/vnd.oci.image.config.v1+json',
                    digest => $config_digest, size => length $config },
        layers => [map { { mediaType =>
                               'application/vnd.oci.image.layer.v1.tar+gzip',
                           digest => $_->{digest}, size => $_->{size} } }
                   @layers],
    });

    my $digest = $put->($manifest);

    RegTest::spew("$dir/oci-layout", '{"imageLayoutVersion":"1.0.0"}')
        unless -e "$dir/oci-layout";

    my $index = -e "$dir/index.json"
        ? $JSON->decode(RegTest::slurp("$dir/index.json"))
        : { schemaVersion => 2, manifests => [] };

    $index->{manifests} = [
        (grep { ($_->{annotations}{'org.opencontainers.image.ref.name'} // '')
                ne $tag } @{ $index->{manifests} }),
        { mediaType => 'application/vnd.oci.image.manifest.v1+json',
          digest => $digest, size => length $manifest,
          annotations => { 'org.opencontainers.image.ref.name' => $tag } },
    ];

    RegTest::spew("$dir/index.json", $JSON->encode($index));

    return { manifest => $manifest, digest => $digest, config => $config,
             config_digest => $config_digest, layers => \@layers };
}

1;

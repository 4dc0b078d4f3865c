package RegTools;

# Helpers for the real-client tests (t/skopeo.t, t/compat_distribution.t,
# t/memory.t): running skopeo and umoci in isolation, building a small OCI
# image without network access, reading OCI layouts, and running CNCF
# distribution (`docker-registry serve`) on a store.
#
#   use lib 't/lib';
#   use RegTest;
#   use RegTools qw(need_tools skopeo build_oci_image ...);

use strict;
use warnings;

use Digest::SHA qw(sha256_hex);
use Exporter qw(import);
use File::Path qw(make_path);
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP ();
use POSIX qw(WNOHANG);
use Test::More ();

require RegTest;

our @EXPORT_OK = qw(need_tools run3 run_cmd skopeo skopeo_ok build_oci_image
                    add_oci_index oci_manifest dir_image slurp spew sha256_file
                    start_distribution stop_distribution free_port
                    start_nginx stop_nginx json_decode);

my $JSON = JSON::PP->new->canonical;

sub json_decode {
    my ($text) = @_;
    my $v = eval { $JSON->decode($text) };
    return $v;
}

# skip_all unless every named program is on PATH.

sub need_tools {
    my @missing;

    for my $tool (@_) {
        push @missing, $tool
            unless grep { -x "$_/$tool" } split /:/, ($ENV{PATH} || '');
    }

    Test::More::plan(skip_all => "missing: @missing (make deps-test)")
        if @missing;
}

# RegTest::slurp, but a missing file is an error here
sub slurp {
    my ($file) = @_;
    -e $file or die "$file: $!\n";
    return RegTest::slurp($file);
}

sub spew { RegTest::spew(@_) }

sub sha256_file {
    my ($file) = @_;
    my $sha = Digest::SHA->new(256);
    $sha->addfile($file, 'b');
    return 'sha256:' . $sha->hexdigest;
}

# Runs a command, stdin from /dev/null; returns (exit status, stdout,
# stderr).  env => {...} adds to the environment (an undef value removes
# the variable); stdin => $bytes is what the command reads instead of
# /dev/null; timeout => seconds (default 120; the command is killed and 255
# returned); merge => 1 sends stderr into stdout, interleaved as it came.
sub run3 {
    my ($cmd, %opts) = @_;

    my $out = File::Temp->new(UNLINK => 1);
    my $err = File::Temp->new(UNLINK => 1);
    my $in;

    if (defined $opts{stdin}) {
        $in = File::Temp->new(UNLINK => 1);
        binmode $in;
        print $in $opts{stdin};
        close $in or die "stdin file: $!\n";
    }

    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        open STDIN, '<', $in ? "$in" : '/dev/null';
        open STDOUT, '>&', $out;
        open STDERR, '>&', $opts{merge} ? \*STDOUT : $err;

        for my $k (keys %{ $opts{env} || {} }) {
            my $v = $opts{env}{$k};
            if (defined $v) {
                $ENV{$k} = $v;
            } else {
                delete $ENV{$k};
            }
        }

        exec(@$cmd) or POSIX::_exit(127);
    }

    my $rc;
    my $timeout = $opts{timeout} || 120;

    eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm($timeout);
        waitpid($pid, 0);
        $rc = $? >> 8;
        alarm(0);
    };

    alarm(0);

    if ($@) {
        kill 'KILL', $pid;
        waitpid($pid, 0);
        return (255, slurp("$out"),
                "timeout after ${timeout}s: @$cmd\n" . slurp("$err"));
    }

    return ($rc, slurp("$out"), slurp("$err"));
}

# run3 with stderr merged: the exit code and everything the command said
sub run_cmd {
    my ($cmd, %opts) = @_;

    my ($rc, $out, $err) = run3($cmd, %opts, merge => 1);

    return ($rc, $err =~ /^timeout after/ ? $err . $out : $out);
}

# skopeo with a private HOME, XDG dirs and blob-info cache.
#
# As root, skopeo (containers/image) keeps its blob-info cache in
# /var/lib/containers/cache: it remembers which registry already has which
# blob and can hide uploads in a later run (a port reused by another test
# run, for instance).  containers/image picks the per-user location
# $XDG_DATA_HOME/containers/cache when _CONTAINERS_ROOTLESS_UID names a
# non-root user, so every test points it into its own temporary directory.
# --insecure-policy: no dependency on /etc/containers/policy.json.

my $SKOPEO_HOME;

sub skopeo {
    my (@args) = @_;

    $SKOPEO_HOME ||= tempdir('skopeo-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    make_path(map { "$SKOPEO_HOME/$_" } qw(data config run tmp));

    my %env = (
        HOME                     => $SKOPEO_HOME,
        XDG_DATA_HOME            => "$SKOPEO_HOME/data",
        XDG_CONFIG_HOME          => "$SKOPEO_HOME/config",
        XDG_RUNTIME_DIR          => "$SKOPEO_HOME/run",
        TMPDIR                   => "$SKOPEO_HOME/tmp",
        _CONTAINERS_ROOTLESS_UID => ($> == 0 ? 65534 : $>),
    );

    return run_cmd(['skopeo', '--insecure-policy', @args], env => \%env);
}

# skopeo as one test assertion; returns the output.

sub skopeo_ok {
    my ($name, @args) = @_;

    my ($rc, $out) = skopeo(@args);

    Test::More::is($rc, 0, $name)
        or Test::More::diag("skopeo @args\n$out");

    return $out;
}

# A small OCI image in layout $dir, tag $tag: three layers (a text file, a
# 256 KiB binary file, a directory of a few files) and a config with an
# entrypoint, environment and labels.  Built with umoci, no network.  The
# layout is created unless it exists (several images may share one);
# options: seed (varies the content), arch (of the config, default amd64).
# Returns the parsed manifest with an extra {digest} and {bytes}.

sub build_oci_image {
    my ($dir, $tag, %opts) = @_;

    my $work = tempdir('ociimg-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $seed = $opts{seed} || 1;

    my @steps;
    my $img = "$dir:$tag";

    spew("$work/hello.txt", "hello from layer one ($seed)\n");

    # deterministic, incompressible content: a SHA-256 chain

    my $bin = '';
    my $h = "seed-$seed";
    while (length($bin) < 256 * 1024) {
        $h = Digest::SHA::sha256($h);
        $bin .= $h;
    }
    spew("$work/data.bin", $bin);

    make_path("$work/tree/sub");
    spew("$work/tree/one.conf", "key = value\n");
    spew("$work/tree/sub/two.txt", "x" x 10000);
    spew("$work/tree/sub/three.txt", join("\n", 1 .. 2000));

    push @steps, [qw(umoci init --layout), $dir] unless -e "$dir/oci-layout";

    push @steps,
        [qw(umoci new --image), $img],
        [qw(umoci insert --image), $img, "$work/hello.txt", '/etc/hello.txt'],
        [qw(umoci insert --image), $img, "$work/data.bin", '/opt/data.bin'],
        [qw(umoci insert --image), $img, "$work/tree", '/srv/tree'],
        [qw(umoci config --image), $img,
         '--config.entrypoint', '/bin/sh',
         '--config.cmd', '-c', '--config.cmd', 'cat /etc/hello.txt',
         '--config.env', 'GREETING=hello',
         '--config.label', 'org.example.test=ngx-registry',
         '--config.workingdir', '/srv',
         '--architecture', $opts{arch} || 'amd64', '--os', 'linux'],
        [qw(umoci gc --layout), $dir];

    for my $cmd (@steps) {
        my ($rc, $out) = run_cmd($cmd);
        die "@$cmd: exit $rc\n$out" if $rc;
    }

    return oci_manifest($dir, $tag);
}

# Adds to OCI layout $dir an image index tagged $tag over the manifests
# tagged @$children (each [tag, architecture]).  Returns the index as
# oci_manifest does.

sub add_oci_index {
    my ($dir, $tag, @children) = @_;

    my @m;

    for my $c (@children) {
        my ($ctag, $arch) = @$c;
        my $cm = oci_manifest($dir, $ctag);
        push @m, '{"mediaType":"application/vnd.oci.image.manifest.v1+json",'
            . '"digest":"' . $cm->{digest} . '","size":' . length($cm->{bytes})
            . ',"platform":{"architecture":"' . $arch . '","os":"linux"}}';
    }

    my $bytes = '{"schemaVersion":2,'
        . '"mediaType":"application/vnd.oci.image.index.v1+json",'
        . '"manifests":[' . join(',', @m) . ']}';
    my $hex = sha256_hex($bytes);

    spew("$dir/blobs/sha256/$hex", $bytes);

    my $index = json_decode(slurp("$dir/index.json"));
    push @{ $index->{manifests} }, {
        mediaType => 'application/vnd.oci.image.index.v1+json',
        digest => "sha256:$hex",
        size => length $bytes,
        annotations => { 'org.opencontainers.image.ref.name' => $tag },
    };
    spew("$dir/index.json", $JSON->encode($index));

    return oci_manifest($dir, $tag);
}

# The manifest of $tag in OCI layout $dir: the parsed JSON plus {digest},
# {bytes} and {mediaType} of the descriptor in index.json.

sub oci_manifest {
    my ($dir, $tag) = @_;

    my $index = json_decode(slurp("$dir/index.json"))
        or die "$dir/index.json: not JSON\n";

    my @desc = grep {
        ($_->{annotations}{'org.opencontainers.image.ref.name'} // '') eq $tag
    } @{ $index->{manifests} || [] };

    die "$dir: no manifest tagged $tag\n" unless @desc == 1;

    my $digest = $desc[0]{digest};
    my ($hex) = $digest =~ /^sha256:([0-9a-f]{64})$/
        or die "$dir: odd digest $digest\n";

    my $bytes = slurp("$dir/blobs/sha256/$hex");
    my $m = json_decode($bytes) or die "$dir: manifest is not JSON\n";

    $m->{digest} = $digest;
    $m->{bytes} = $bytes;
    $m->{descriptorMediaType} = $desc[0]{mediaType};

    return $m;
}

# A `dir:` transport directory written by skopeo: manifest.json plus one file
# per blob named by its hex digest.  Returns the parsed manifest with
# {digest} and {bytes}.

sub dir_image {
    my ($dir) = @_;

    my $bytes = slurp("$dir/manifest.json");
    my $m = json_decode($bytes) or die "$dir/manifest.json: not JSON\n";

    $m->{bytes} = $bytes;
    $m->{digest} = 'sha256:' . sha256_hex($bytes);

    return $m;
}

sub free_port { RegTest::free_port() }

# CNCF distribution on the store $root (its `rootdirectory`), on a free port;
# proxy => URL makes it a pull-through cache of that registry.
# Returns a hashref {pid, port, url, config, log}; stop it with
# stop_distribution (also done at exit).

my @DISTRIBUTIONS;

sub start_distribution {
    my ($root, %opts) = @_;

    my $dir = tempdir('distribution-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

    for my $try (1 .. 5) {
        my $port = free_port();
        my $d = {
            port   => $port,
            url    => "http://127.0.0.1:$port",
            config => "$dir/config.yml",
            log    => "$dir/distribution.log",
            owner  => $$,
        };

        spew($d->{config}, <<"EOF");
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $root
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
  secret: ngx-registry-tests
EOF

        # proxy => URL: a pull-through cache of that registry
        spew($d->{config}, slurp($d->{config})
                           . "proxy:\n  remoteurl: $opts{proxy}\n")
            if $opts{proxy};

        my $pid = fork();
        die "fork: $!\n" unless defined $pid;

        if ($pid == 0) {
            open STDIN, '<', '/dev/null';
            open STDOUT, '>', $d->{log};
            open STDERR, '>&', \*STDOUT;
            exec('docker-registry', 'serve', $d->{config})
                or POSIX::_exit(127);
        }

        $d->{pid} = $pid;
        push @DISTRIBUTIONS, $d;

        for (1 .. 200) {
            if (waitpid($pid, WNOHANG) == $pid) {
                delete $d->{pid};
                last;
            }

            my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                          PeerPort => $port, Proto => 'tcp');
            if ($s) {
                close $s;
                return $d;
            }

            select undef, undef, undef, 0.05;
        }

        my $log = -f $d->{log} ? slurp($d->{log}) : '';
        stop_distribution($d);
        next if $log =~ /address already in use/i;
        die "docker-registry did not start:\n$log";
    }

    die "docker-registry: no free port\n";
}

sub stop_distribution { _stop_child($_[0], 'TERM', 5) }

# nginx with a config of our own (not RegTest's): in the foreground, prefix
# $prefix; waits until 127.0.0.1:$port answers.  Returns {pid, log} or dies
# with the output of nginx.  Under REGTEST_ASAN it gets the sanitizer
# runtimes, its reports go to $prefix (RegTest::nginx_env).

my @NGINXES;

sub start_nginx {
    my ($conf, $prefix, $port) = @_;

    my $nginx = $ENV{REGTEST_NGINX} || '/usr/sbin/nginx';
    my $n = { log => "$prefix/nginx.out", owner => $$ };
    my %env = RegTest::nginx_env($prefix, $n->{log});   # REGTEST_ASAN

    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $n->{log};
        open STDERR, '>&', \*STDOUT;
        @ENV{keys %env} = values %env;
        exec($nginx, '-p', "$prefix/", '-c', $conf, '-g', 'daemon off;')
            or POSIX::_exit(127);
    }

    $n->{pid} = $pid;
    push @NGINXES, $n;

    for (1 .. 200) {
        if (waitpid($pid, WNOHANG) == $pid) {
            delete $n->{pid};
            die "nginx exited:\n" . slurp($n->{log});
        }

        my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                      PeerPort => $port, Proto => 'tcp');
        if ($s) {
            close $s;
            return $n;
        }

        select undef, undef, undef, 0.05;
    }

    stop_nginx($n);
    die "nginx did not answer on $port:\n" . slurp($n->{log});
}

sub stop_nginx { _stop_child($_[0], 'QUIT', 10) }

# stops a server this process started: $signal, then KILL after $seconds
sub _stop_child {
    my ($h, $signal, $seconds) = @_;

    return unless $h && $h->{owner} == $$;

    my $pid = delete $h->{pid} or return;

    kill $signal, $pid;

    for (1 .. $seconds * 20) {
        return if waitpid($pid, WNOHANG) != 0;
        select undef, undef, undef, 0.05;
    }

    kill 'KILL', $pid;
    waitpid($pid, 0);
}

END {
    local $?;
    stop_distribution($_) for @DISTRIBUTIONS;
    stop_nginx($_) for @NGINXES;
}

1;

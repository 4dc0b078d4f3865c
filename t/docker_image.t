#!/usr/bin/perl

# The Docker image (docker/Dockerfile, docker/compose.yaml,
# docker/nginx.conf), for real, with a private dockerd (t/lib/
# DockerEngine.pm) and no registry to pull from:
# - the base: `mmdebstrap --variant=minbase bookworm` (cached for the day
#   under /var/cache/ngx-registry-tests, REGTEST_DOCKER_CACHE), then
#   `docker import` as debian:12;
# - `docker build --network host -f docker/Dockerfile` (BuildKit: the
#   stages run side by side; apt-get reaches Debian's archive through the
#   host's network).  The image is saved in the cache under a hash of
#   everything the build reads and of the base; a later run (the sanitized
#   pass of CI) loads it instead of building the same thing again;
#   REGTEST_DOCKER_REBUILD=1 always builds;
# - `docker-compose -f compose.yaml -f <override> up` in the foreground,
#   its output in a file: compose.yaml as shipped but for its `ports:`
#   (there is no bridge network here; compose 1.29 cannot drop ports in an
#   override), the override puts it on the host's network with nginx.conf
#   listening on a free port;
# - the seeds' flow: a local image (busybox-static, `docker import`),
#   `docker push localhost:PORT/my-busybox`, `docker image remove`,
#   `docker pull`, `docker run` of the pulled image, /v2/_catalog and
#   tags/list by HTTP; the pushes and pulls are access log lines of
#   compose's output, the blobs are in the compose volume; Ctrl-C (SIGINT
#   to compose) stops the container, nginx exiting 0;
# - a registry:2 volume: `docker-registry serve` (distribution 2.8) on the
#   mountpoint of a named volume, an image pushed into it with docker; then
#   the volume mounted by compose as compose.yaml's comment says (external,
#   by name): the image pulls and runs, the catalog lists it.
# Skipped where dockerd cannot start (not root, or it does not answer),
# and on a developer's machine without the tools (a failure under CI).
# About 2-6 minutes with a build (the base and the build dominate; 2 cores
# shared with other tests), under a minute with the image cached.

use strict;
use warnings;

use Test::More;
use Digest::SHA ();
use Fcntl qw(:flock);
use File::Path qw(make_path rmtree);
use File::Temp qw(tempdir);
use HTTP::Tiny;
use IO::Socket::INET;
use POSIX qw(WNOHANG strftime);
use Time::HiRes ();

use lib 't/lib';
use RegTest;
use JSON::PP ();
use RegTools qw(run3 slurp spew free_port json_decode
                start_distribution stop_distribution);
use DockerEngine qw(need_dockerd tar_bytes);

need_dockerd();

# what make deps-test installs: a skip on a developer's machine without
# it, a failure under CI (make test installs it there)
{
    my @missing = grep { my $t = $_; !grep { -x "$_/$t" } split /:/, $ENV{PATH} }
                  qw(mmdebstrap docker-compose docker-registry);
    push @missing, 'busybox-static' unless -x '/bin/busybox'
        && `file -L /bin/busybox 2>/dev/null` !~ /dynamically/;

    if (@missing && $ENV{CI}) {
        plan(tests => 1);
        fail("installed: @missing (make deps-test installs them)");
        exit 1;
    }
    plan(skip_all => "missing: @missing (make deps-test)") if @missing;
}

my $started = Time::HiRes::time();
my $REPO = $RegTest::REPO;
my $CACHE = $ENV{REGTEST_DOCKER_CACHE} || '/var/cache/ngx-registry-tests';
my $IMAGE = 'ngx-registry:latest';

my $tmp = tempdir('docker-image-t-XXXXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{REGTEST_LEAVE});

my $e = eval { DockerEngine->new };
plan(skip_all => "dockerd cannot start here: $@") unless $e;
pass('dockerd answers on ' . $e->sock);

my $http = HTTP::Tiny->new(timeout => 30, keep_alive => 0);

sub elapsed { sprintf('%.0f s', Time::HiRes::time() - $started) }

###############################################################################
# the cache: $name made once by $make->($tmpfile) under a lock; other
# files of its kind ($prefix*) older than a day are removed

sub cached {
    my ($prefix, $name, $make) = @_;

    make_path($CACHE);
    my $file = "$CACHE/$name";

    open(my $lock, '>', "$CACHE/.lock") or die "$CACHE/.lock: $!\n";
    flock($lock, LOCK_EX) or die "flock: $!\n";

    return ($file, 1) if -f $file && -s _;
    rmtree($file) if -d $file;          # made so by an earlier bug

    unlink grep { $_ ne $file && -M $_ > 1 } glob("$CACHE/$prefix*");

    my $part = "$file.part$$";
    my $ok = $make->($part);
    rename($part, $file) if $ok;
    unlink $part;

    return ($ok ? $file : undef, 0);
}

###############################################################################
# debian:12, made by mmdebstrap as the official image is made (debuerreotype
# also gives dpkg force-unsafe-io and apt no translations)

{
    my $day = strftime('%Y%m%d', gmtime);
    my $out = '';

    my ($base, $was) = cached('debian-12-minbase-', "debian-12-minbase-$day.tar",
                              sub {
        my ($part) = @_;
        # (the format said: mmdebstrap makes a directory of a name not
        # ending in .tar, as the part file's does)
        my ($rc, $o, $err) = run3(['mmdebstrap', '--variant=minbase',
                                   '--format=tar',
                                   '--dpkgopt=force-unsafe-io',
                                   '--aptopt=Acquire::Languages "none"',
                                   'bookworm', $part], timeout => 900);
        $out = "$o$err";
        return $rc == 0;
    });

    ok($base, 'mmdebstrap: a bookworm minbase tarball'
              . ($was ? ' (cached today)' : '')) or diag($out);
    BAIL_OUT('no base image') unless $base;

    $e->docker_ok('docker import as debian:12', 'import', $base, 'debian:12');
    note('base: ' . elapsed());
}

###############################################################################
# the image


{
    # everything docker/Dockerfile reads, and the base it starts from
    my $sha = Digest::SHA->new(256);
    my @inputs = ('docker/Dockerfile', 'docker/nginx.conf', '.dockerignore',
                  'conf-examples/registry-log-format.conf', 'Makefile',
                  'config', sort glob("$REPO/src/*"));
    for my $f (@inputs) {
        (my $rel = $f) =~ s{^\Q$REPO\E/}{};
        $sha->add("$rel\0" . slurp($f =~ m{^/} ? $f : "$REPO/$f") . "\0");
    }
    $sha->add(strftime('%Y%m%d', gmtime));
    my $key = substr($sha->hexdigest, 0, 16);

    my $log = '';
    my $build = sub {
        my ($part) = @_;
        my ($rc, $out, $err) = $e->docker(
            { timeout => 1800, merge => 1, env => { DOCKER_BUILDKIT => 1 } },
            'build', '--progress', 'plain', '--network', 'host',
            '-f', "$REPO/docker/Dockerfile", '-t', $IMAGE, $REPO);
        $log = $out;
        return 0 if $rc;
        ($rc, $out, $err) = $e->docker({ timeout => 600 }, 'save', '-o',
                                       $part, $IMAGE);
        $log .= "docker save: $err" if $rc;
        return $rc == 0;
    };

    my ($file, $was);

    if ($ENV{REGTEST_DOCKER_REBUILD}) {
        $file = $build->("$tmp/image.tar") ? "$tmp/image.tar" : undef;
        $was = 0;
    } else {
        ($file, $was) = cached('ngx-registry-image-',
                               "ngx-registry-image-$key.tar", $build);
    }

    ok($file, 'docker build --network host -f docker/Dockerfile'
              . ($was ? ' (the same inputs were built today: loaded)' : ''))
        or diag(length $log > 20000 ? substr($log, -20000) : $log);
    BAIL_OUT('no image') unless $file;

    $e->docker_ok('docker load', 'load', '-i', $file) if $was;
    my $built = $e->inspect($IMAGE);
    note("image $key: " . elapsed());

    is_deeply($built->{Config}{Cmd}, ['nginx', '-g', 'daemon off;'],
              'the image: nginx in the foreground');
    is($built->{Config}{StopSignal}, 'SIGQUIT', '... stopped gracefully');
    ok(exists $built->{Config}{Volumes}{'/var/lib/registry'},
       '... /var/lib/registry a volume');
    ok(exists $built->{Config}{ExposedPorts}{'5000/tcp'}, '... port 5000');

    # the module was built against the image's own nginx
    my ($rc, $out, $err) = $e->docker('run', '--rm', '--network', 'none',
                                      $IMAGE, 'nginx', '-T');
    is($rc, 0, 'nginx -T in the image') or diag($err);
    like($out, qr{^load_module /usr/lib/nginx/modules/ngx_http_registry_module\.so;}m,
         '... loads the module');
    like($out, qr{^\s*registry_root /var/lib/registry;}m, '... serves /var/lib/registry');
    like($out, qr{^\s*access_log /dev/stdout registry;}m,
         '... access log to stdout, in the registry format');
    like($out, qr{^error_log stderr}m, '... errors to stderr');
}

###############################################################################
# compose: compose.yaml as shipped, without ports; the override for the host
# network and the port

my $port = free_port();
my $project = "ngxregtest$$";

{
    my $compose = slurp("$REPO/docker/compose.yaml");
    ok($compose =~ s/^    ports:\n(?:      - .*\n)+//m, 'compose.yaml: ports dropped');
    ok($compose =~ s/^(      context: )\.\.$/$1$REPO/m,
       'compose.yaml: the build context, absolute');
    spew("$tmp/compose.yaml", $compose);

    my $conf = slurp("$REPO/docker/nginx.conf");
    ok($conf =~ s/^(\s+listen )5000;/${1}127.0.0.1:$port;/m,
       "nginx.conf: listen 5000 moved to 127.0.0.1:$port");
    spew("$tmp/nginx.conf", $conf);

    spew("$tmp/compose.test.yaml", <<"EOF");
services:
  registry:
    network_mode: host
    volumes:
      - $tmp/nginx.conf:/etc/nginx/nginx.conf:ro
EOF

    # the registry:2 volume of the second part: compose.yaml's comment
    spew("$tmp/compose.regdata.yaml", <<"EOF");
volumes:
  registry-data:
    external: true
    name: regdata-$$
EOF
}

my %compose;   # the running `docker-compose up`: pid, out
my $ups = 0;

sub compose {
    my (@args) = @_;
    return run3(['docker-compose', '--ansi', 'never', '-p', $project, @args],
                env => $e->env, merge => 1, timeout => 300);
}

sub compose_up {
    my (@files) = @_;

    my $out = "$tmp/compose-" . $ups++ . '.out';
    my %env = %{ $e->env };

    my $pid = fork();
    die "fork: $!\n" unless defined $pid;

    if ($pid == 0) {
        setpgrp(0, 0);
        open STDIN, '<', '/dev/null';
        open STDOUT, '>', $out;
        open STDERR, '>&', \*STDOUT;
        for my $k (keys %env) {
            defined $env{$k} ? ($ENV{$k} = $env{$k}) : delete $ENV{$k};
        }
        exec('docker-compose', '--ansi', 'never', '-p', $project,
             map({ ('-f', $_) } @files), 'up', '--no-color')
            or POSIX::_exit(127);
    }

    %compose = (pid => $pid, out => $out);

    for (1 .. 900) {
        last if waitpid($pid, WNOHANG) == $pid;
        my $r = $http->get("http://127.0.0.1:$port/v2/");
        return 1 if $r->{status} == 200;
        select undef, undef, undef, 0.2;
    }

    diag(slurp($out));
    return 0;
}

# Ctrl-C: SIGINT to compose; true when it stopped the container and exited
sub compose_stop {
    return 1 unless $compose{pid};

    kill 'INT', $compose{pid};

    for (1 .. 600) {
        if (waitpid($compose{pid}, WNOHANG) == $compose{pid}) {
            delete $compose{pid};
            return $? == 0;
        }
        select undef, undef, undef, 0.1;
    }

    kill 'KILL', -$compose{pid};
    waitpid(delete $compose{pid}, 0);
    return 0;
}

END { compose_stop() if $compose{pid} }

# the access log lines of compose's output, in the registry format:
# 'registry_1  | 127.0.0.1 "-" [02/Dec/2026:03:04:05 +0000] "GET ...'
sub access_log {
    return join '', grep { m{^\S+\s+\| \S+ "[^"]*" \[[^]]+\] "} }
                    split /^/, slurp($compose{out});
}

sub json_get {
    my ($path) = @_;
    my $r = $http->get("http://127.0.0.1:$port$path");
    return ($r->{status}, json_decode($r->{content}) || {});
}

my $DOCKER_UA = qr{"docker/[^"]*"\n};

###############################################################################
# a local image: busybox alone, made without any network

my $busybox = do {
    open(my $fh, '<:raw', '/bin/busybox') or die "/bin/busybox: $!\n";
    local $/;
    <$fh>;
};

sub local_image {
    my ($name, @extra) = @_;
    my $tar = tar_bytes([['bin/'], ['bin/busybox', $busybox, 0755], @extra]);
    my ($rc, $out, $err) = $e->docker({ stdin => $tar }, 'import', '-', $name);
    is($rc, 0, "docker import - $name") or diag($err);
}

###############################################################################
# push, remove, pull, run; the HTTP API; the access log on compose's output

my $reg = "localhost:$port";

{
    ok(compose_up("$tmp/compose.yaml", "$tmp/compose.test.yaml"),
       "docker-compose up: /v2/ answers on $reg");
    note('compose up: ' . elapsed());

    local_image('my-busybox');
    $e->docker_ok('docker tag', 'tag', 'my-busybox', "$reg/my-busybox");

    my $out = $e->docker_ok("docker push $reg/my-busybox", 'push',
                            "$reg/my-busybox");
    my ($digest) = $out =~ /^latest: digest: (sha256:[0-9a-f]{64}) size: \d+$/m;
    ok($digest, "docker push: the manifest is $digest");

    $e->docker_ok('docker image remove', 'image', 'remove', "$reg/my-busybox",
                  'my-busybox');
    is($e->inspect("$reg/my-busybox")->{Id}, undef, 'the image is gone');

    $out = $e->docker_ok("docker pull $reg/my-busybox", 'pull',
                         "$reg/my-busybox");
    like($out, qr/^Digest: \Q$digest\E$/m, 'docker pull: the pushed digest');
    like($out, qr/^Status: Downloaded newer image/m, 'docker pull: downloaded');

    my ($rc, $o, $err) = $e->docker('run', '--network', 'host', '--rm',
                                    "$reg/my-busybox", '/bin/busybox', 'echo',
                                    'hello from the pulled image');
    is("$rc $o", "0 hello from the pulled image\n",
       'docker run of the pulled image') or diag($err);

    my ($status, $j) = json_get('/v2/_catalog');
    is_deeply([$status, $j->{repositories}], [200, ['my-busybox']],
              'GET /v2/_catalog');
    ($status, $j) = json_get('/v2/my-busybox/tags/list');
    is_deeply([$status, $j->{tags}], [200, ['latest']],
              'GET /v2/my-busybox/tags/list');

    my $m = $http->get("http://127.0.0.1:$port/v2/my-busybox/manifests/latest",
        { headers => { Accept =>
            'application/vnd.docker.distribution.manifest.v2+json' } });
    is($m->{headers}{'docker-content-digest'}, $digest,
       'GET the manifest: the pushed digest');
    my @blobs = map { $_->{digest} }
                (json_decode($m->{content}) || {})->{config} // (),
                @{ (json_decode($m->{content}) || {})->{layers} || [] };
    is(scalar @blobs, 2, 'a config and a layer');

    # the access log, as compose shows it
    my $log = access_log();
    like($log, qr{"PUT /v2/my-busybox/manifests/latest HTTP/1\.1" 201 .*$DOCKER_UA}m,
         'compose output: docker PUT the manifest, 201');
    my $fields = "action=push repo=my-busybox ref=latest digest=$digest error=-";
    like($log, qr{"PUT /v2/my-busybox/manifests/latest HTTP/1\.1" 201 .* \Q$fields\E }m,
         '... in the registry format: action, repository, tag, digest');
    for my $b (@blobs) {
        my $q = $b =~ s/:/%3A/r;
        like($log, qr{"PUT /v2/my-busybox/blobs/uploads/\S+\?digest=\Q$q\E HTTP/1\.1" 201 .*$DOCKER_UA}m,
             "compose output: $b uploaded, 201");
        like($log, qr{"GET /v2/my-busybox/blobs/\Q$b\E HTTP/1\.1" 200 .*$DOCKER_UA}m,
             "compose output: $b pulled, 200");
    }
    like($log, qr{"GET /v2/my-busybox/manifests/\Q$digest\E HTTP/1\.1" 200 .*$DOCKER_UA}m,
         'compose output: the manifest pulled');
    like($log, qr{"GET /v2/_catalog HTTP/1\.1" 200 }m,
         'compose output: the catalog request');

    # operations inside the container: health, metrics, registry-ctl
    my $h = $http->get("http://127.0.0.1:$port/health");
    like("$h->{status} $h->{content}", qr/^200 \{"status":"ok"\}\n?$/,
         'GET /health');
    my $metrics = $http->get("http://127.0.0.1:$port/metrics")->{content};
    like($metrics,
         qr/^registry_http_requests_total\{operation="manifest_push",code="201"\} 1$/m,
         'GET /metrics: the one manifest push');
    my ($grc, $gout, $gerr) = $e->docker('exec', "${project}_registry_1",
                                         'registry-ctl', '--url',
                                         "http://127.0.0.1:$port/_registry",
                                         'gc', '--dry-run');
    is($grc, 0, 'docker exec registry-ctl gc --dry-run: exit 0')
        or diag("$gout$gerr");
    my $gc = json_decode($gout) || {};
    is_deeply([$gc->{state}, $gc->{report}{dry_run}, $gc->{report}{blobs_removed}],
              ['done', JSON::PP::true(), 0],
              'registry-ctl gc --dry-run: done, a dry run, nothing removed');

    # the store is compose's volume
    my ($vrc, $vout) = $e->docker('volume', 'inspect', '-f',
                                  '{{.Mountpoint}}', "${project}_registry-data");
    chomp $vout;
    ok(-f "$vout/docker/registry/v2/repositories/my-busybox/_manifests/tags/"
       . 'latest/current/link', "the volume ${project}_registry-data holds the tag");

    ok(compose_stop(), 'Ctrl-C: docker-compose stops and exits 0');
    like(slurp($compose{out}), qr/^Gracefully stopping/m,
         "compose output: compose's graceful stop");
    my (undef, $st) = $e->docker('inspect', '-f', '{{.State.Status}} {{.State.ExitCode}}',
                                 "${project}_registry_1");
    is($st, "exited 0\n", 'the container: nginx exited 0 (SIGQUIT)');
    unlike(slurp($compose{out}), qr/\[(?:alert|emerg|crit)\]/,
           'compose output: no alerts');

    compose('-f', "$tmp/compose.yaml", '-f', "$tmp/compose.test.yaml", 'rm',
            '-f');
    note('first part: ' . elapsed());
}

###############################################################################
# a registry:2 volume: written by distribution, served by the image

{
    my ($rc, $out, $err) = $e->docker('volume', 'create', "regdata-$$");
    is($rc, 0, "docker volume create regdata-$$") or diag($err);
    ($rc, my $mnt) = $e->docker('volume', 'inspect', '-f', '{{.Mountpoint}}',
                                "regdata-$$");
    chomp $mnt;

    my $dist = start_distribution($mnt);
    my $dreg = "127.0.0.1:$dist->{port}";

    local_image('legacy-app', ['etc/'], ['etc/legacy.txt', "from registry:2\n"]);
    $e->docker_ok('docker tag', 'tag', 'legacy-app', "$dreg/legacy/app:v1");
    $out = $e->docker_ok('docker push to docker-registry (distribution)',
                         'push', "$dreg/legacy/app:v1");
    my ($digest) = $out =~ /^v1: digest: (sha256:[0-9a-f]{64}) size: \d+$/m;
    ok($digest, "distribution stored $digest");
    stop_distribution($dist);

    ok(-f "$mnt/docker/registry/v2/repositories/legacy/app/_manifests/tags/v1/"
       . 'current/link', 'the volume has the layout of a registry:2 volume');

    $e->docker_ok('docker image remove', 'image', 'remove', 'legacy-app',
                  "$dreg/legacy/app:v1");

    ok(compose_up("$tmp/compose.yaml", "$tmp/compose.test.yaml",
                  "$tmp/compose.regdata.yaml"),
       'docker-compose up with the registry:2 volume (external)');

    my ($status, $j) = json_get('/v2/_catalog');
    is_deeply([$status, $j->{repositories}], [200, ['legacy/app']],
              'the catalog: what distribution stored');

    $out = $e->docker_ok("docker pull $reg/legacy/app:v1", 'pull',
                         "$reg/legacy/app:v1");
    like($out, qr/^Digest: \Q$digest\E$/m, 'docker pull: the digest distribution gave');

    ($rc, $out, $err) = $e->docker('run', '--network', 'host', '--rm',
                                   "$reg/legacy/app:v1", '/bin/busybox', 'cat',
                                   '/etc/legacy.txt');
    is("$rc $out", "0 from registry:2\n", 'docker run: its file') or diag($err);

    like(access_log(), qr{"GET /v2/legacy/app/manifests/\Q$digest\E HTTP/1\.1" 200 .*$DOCKER_UA}m,
         'compose output: the pull');

    ok(compose_stop(), 'Ctrl-C: docker-compose exits 0');
}

note('docker_image.t: ' . elapsed());
ok($e->stop, 'dockerd stopped');

done_testing();

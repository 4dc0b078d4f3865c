#!/usr/bin/perl

# Two nginx hosts on one store on GlusterFS, for real (t/lib/RegGluster.pm:
# a replica 2 volume of two glusterd in network namespaces, mounted twice
# over FUSE).  Host A serves the store through one mount, host B through
# the other.  Concurrent pushes of shared layers through both; the same
# blobs pushed through both again and again (each commit renames its copy
# over the blob the other host refreshes: ESTALE there, looked up again);
# the same tag pushed with different manifests through both at once (one
# of them wins, both hosts name the same one); chunked uploads whose chunks
# alternate between the hosts (each host sees the other's progress); the
# job lease across hosts (a fsck on A makes B's gc wait); a gc on A while B
# pushes (nothing B pushed is lost, the garbage goes).  Afterwards fsck on
# B is clean and both hosts serve identical content: the same
# repositories, tags, manifest bytes and blobs.  Skipped only without FUSE
# or netns.  The volume options and mount options are those README.md's
# "Several hosts on one store" gives.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use Digest::SHA ();
use POSIX ();
use Time::HiRes qw(sleep time);

use lib 't/lib';
use RegTest;
use RegGluster;

my $OCI = 'application/vnd.oci.image.manifest.v1+json';
my $ACCEPT = join ', ', $OCI,
    'application/vnd.oci.image.index.v1+json',
    'application/vnd.docker.distribution.manifest.v2+json';

my $start = time;
# the client-side caches that serve stale data to one client after
# another renamed a file over it (see README, "Several hosts on one store")
my %VOLUME_OPTIONS = (
    'performance.quick-read' => 'off',
    'performance.stat-prefetch' => 'off',
    'performance.open-behind' => 'off',
);

my $g = RegGluster->new(options => \%VOLUME_OPTIONS);
my @MOUNT_OPTIONS = qw(--entry-timeout=0 --attribute-timeout=0);
my @mnt = map { $g->mount(@MOUNT_OPTIONS) } 1 .. 2;

note(sprintf 'volume %s on %s, mounted in %.1f s', $g->volume,
     join(' and ', $g->servers), time - $start);

# the same directory through both mounts

{
    open(my $fh, '>', "$mnt[0]/hello") or die "$mnt[0]/hello: $!";
    print $fh "written through mount A\n";
    close $fh or die "close: $!";
    my $seen = RegTest::slurp("$mnt[1]/hello");
    is($seen, "written through mount A\n", 'mount B reads what A wrote');
    unlink "$mnt[0]/hello";
}

my @h = map { host($_) } @mnt;
my ($A, $B) = @h;

END {
    local $?;
    $_->stop for grep { defined } @h;
    $g->cleanup if $g;
}

# one nginx on a mount: the store in registry/, an admin location
sub host {
    my ($mnt) = @_;

    return RegTest->new(
        delete => 1,
        workers => 2,
        root => "$mnt/registry",
        location_extra => 'registry_catalog_refresh 1s;',
        server_extra => <<"EOF");
        location /_registry/ {
            registry_admin on;
            registry_root $mnt/registry;
        }
EOF
}

my $json = JSON::PP->new->canonical;

###############################################################################
# helpers

# runs $code in $n children at once (child $i gets $i); returns, per child,
# the lines it printed, or dies inside: "FAIL ..." lines
sub in_parallel {
    my ($n, $code) = @_;

    my @kids;

    for my $i (0 .. $n - 1) {
        pipe(my $rd, my $wr) or die "pipe: $!";
        my $pid = fork() // die "fork: $!";

        if ($pid == 0) {
            close $rd;
            my @out = eval { $code->($i) };
            @out = ("FAIL $@") if $@;
            print $wr "$_\n" for @out;
            close $wr;
            POSIX::_exit(0);
        }

        close $wr;
        push @kids, [$pid, $rd];
    }

    my @results;

    for my $k (@kids) {
        my ($pid, $rd) = @$k;
        my @lines = <$rd>;
        chomp @lines;
        waitpid($pid, 0);
        push @results, \@lines;
    }

    return @results;
}

# notes how long the part before took
my $lap = time;
sub lap {
    my ($what) = @_;
    note(sprintf '%s: %.1f s', $what, time - $lap);
    $lap = time;
}

sub failures {
    return grep { /^FAIL/ } map { @$_ } @_;
}

# a chunked upload whose requests alternate between the hosts: POST on
# $hosts[0], chunk $i on $hosts[$i % 2] (after the other host reported the
# bytes so far), PUT on the host after the last chunk; dies on a wrong
# answer; the digest
sub upload_alternating {
    my ($name, $bytes, $chunks, $first) = @_;

    my @on = $first ? ($B, $A) : ($A, $B);
    my $size = int(length($bytes) / $chunks) + 1;

    my $r = $on[0]->req('POST', "/v2/$name/blobs/uploads/");
    die "POST on host 0: $r->{status} $r->{content}\n"
        unless $r->{status} == 202;
    my $loc = $r->{headers}{location};

    my $off = 0;
    my $i = 0;

    while ($off < length $bytes) {
        my $here = $on[ $i % 2 ];
        my $there = $on[ ($i + 1) % 2 ];
        my $chunk = substr($bytes, $off, $size);
        my $end = $off + length($chunk) - 1;

        # the other host knows how far the upload is
        if ($off > 0) {
            $r = $here->req('GET', $loc);
            die "status of $loc before chunk $i: $r->{status} "
                . ($r->{headers}{range} // '-') . " $r->{content}\n"
                unless $r->{status} == 204
                       && $r->{headers}{range} eq '0-' . ($off - 1);
        }

        $r = $here->req('PATCH', $loc,
                        headers => {
                            'Content-Type' => 'application/octet-stream',
                            'Content-Range' => "$off-$end",
                        },
                        content => $chunk);
        die "PATCH chunk $i ($off-$end): $r->{status} $r->{content}\n"
            unless $r->{status} == 202 && $r->{headers}{range} eq "0-$end";

        $loc = $r->{headers}{location};
        $off = $end + 1;
        $i++;
    }

    my $d = RegTest::digest($bytes);
    $r = $on[ $i % 2 ]->req('PUT', "$loc?digest=$d",
                            headers => {
                                'Content-Type' => 'application/octet-stream',
                            },
                            content => '');
    die "PUT $d: $r->{status} $r->{content}\n" unless $r->{status} == 201;

    return $d;
}

# bytes that are different for each $seed, $len of them
sub bytes_of {
    my ($seed, $len) = @_;
    my $s = '';
    my $n = 0;
    $s .= Digest::SHA::sha256("$seed " . $n++) while length $s < $len;
    return substr($s, 0, $len);
}

# an OCI manifest of blobs already pushed
sub manifest_of {
    my ($config, @layers) = @_;

    return $json->encode({
        schemaVersion => 2,
        mediaType => $OCI,
        config => { mediaType => 'application/vnd.oci.image.config.v1+json',
                    digest => RegTest::digest($config),
                    size => length $config },
        layers => [ map { {
            mediaType => 'application/vnd.oci.image.layer.v1.tar',
            digest => RegTest::digest($_), size => length $_,
        } } @layers ],
    });
}

sub run_job {
    my ($t, $kind, $query) = @_;

    my $r = $t->req('POST', "/_registry/$kind?$query");
    die "POST $kind: $r->{status} $r->{content}\n"
        unless $r->{status} == 202;

    return wait_job($t, decode_json($r->{content})->{id});
}

# the report of a job once it is done (dies if it failed)
sub wait_job {
    my ($t, $id) = @_;

    # a bound for a hang only: a walk over FUSE on a loaded machine is slow
    for (1 .. 6000) {
        my $j = decode_json($t->req('GET', "/_registry/jobs/$id")->{content});
        if ($j->{state} ne 'running') {
            die "$j->{kind} $id: $j->{state} " . ($j->{error} // '') . "\n"
                unless $j->{state} eq 'done';
            return $j->{report};
        }
        sleep 0.1;
    }

    die "job $id: still running after 600 s\n";
}

# every blob named by a manifest: [digest, ...]
sub blobs_of {
    my ($bytes) = @_;
    my $m = decode_json($bytes);
    return map { $_->{digest} } $m->{config} // (), @{ $m->{layers} // [] };
}

# what one host serves: { repo => { tags => [...], manifests => { tag =>
# [digest, bytes] }, blobs => { digest => sha256 of the bytes served } } }
sub served {
    my ($t, @repos) = @_;

    my %s;

    for my $repo (@repos) {
        my $r = $t->req('GET', "/v2/$repo/tags/list?n=1000");
        my $tags = $r->{status} == 200
                   ? decode_json($r->{content})->{tags} : ["$r->{status}"];
        $s{$repo}{tags} = $tags;

        for my $tag (@$tags) {
            $r = $t->req('GET', "/v2/$repo/manifests/$tag",
                         headers => { Accept => $ACCEPT });
            $s{$repo}{manifests}{$tag} =
                [ $r->{headers}{'docker-content-digest'} // $r->{status},
                  $r->{content} ];
            next unless $r->{status} == 200;

            for my $d (blobs_of($r->{content})) {
                my $b = $t->req('GET', "/v2/$repo/blobs/$d");
                $s{$repo}{blobs}{$d} = $b->{status} == 200
                    ? RegTest::digest($b->{content}) : $b->{status};
            }
        }
    }

    return \%s;
}

sub catalog {
    my ($t) = @_;
    my $r = $t->req('GET', '/v2/_catalog?n=10000');
    return $r->{status} == 200
           ? decode_json($r->{content})->{repositories} : [$r->{status}];
}

###############################################################################
# concurrent pushes of shared layers, through both hosts

my @shared = map { bytes_of("shared $_", 100_000 + $_) } 1 .. 3;
my %pushed;            # repo => { tag => manifest digest }

{
    my @res = in_parallel(4, sub {
        my ($k) = @_;
        my $t = $h[ $k % 2 ];
        my @out;

        for my $n (1 .. 2) {

            # a repository of their own, one everybody pushes to
            my $repo = $n == 2 ? 'shared/common' : "shared/k$k";
            my $own = bytes_of("own $k.$n", 30_000);
            my $config = "{\"k\":$k,\"n\":$n}";

            $t->push_blob($repo, $_) for @shared, $config;

            # the own layer in chunks through both hosts
            upload_alternating($repo, $own, 3, $k % 2);

            my $m = manifest_of($config, @shared, $own);
            my $r = $t->push_manifest($repo, "k$k-$n", $m, $OCI);
            die "PUT $repo:k$k-$n: $r->{status} $r->{content}\n"
                unless $r->{status} == 201;
            push @out, "$repo k$k-$n " . RegTest::digest($m);
        }

        return @out;
    });

    is_deeply([ failures(@res) ], [], 'shared layers: every push succeeded');

    for (map { @$_ } @res) {
        next if /^FAIL/;
        my ($repo, $tag, $d) = split ' ';
        $pushed{$repo}{$tag} = $d;
    }

    is(scalar(map { keys %$_ } values %pushed), 8,
       'shared layers: 8 images pushed by 4 clients');

    my $d = RegTest::digest($shared[0]);
    my @blobs = glob("$mnt[1]/registry/docker/registry/v2/blobs/sha256/*/*");
    is(scalar(grep { m{/\Q@{[ substr $d, 7 ]}\E$} } @blobs), 1,
       'shared layers: stored once');
}

lap('shared layers');

###############################################################################
# the same blobs pushed through both hosts at once, again and again: each
# commit renames its copy over the blob the other host is refreshing

{
    my @blobs = map { bytes_of("same blob $_", 20_000) } 1 .. 2;

    my @res = in_parallel(6, sub {
        my ($k) = @_;
        my $t = $h[ $k % 2 ];
        return map { map { $t->push_blob("same/b$k", $_) } @blobs } 1 .. 5;
    });

    is_deeply([ failures(@res) ], [], 'same blob: 60 pushes, all 201');

    for my $d (map { RegTest::digest($_) } @blobs) {
        is_deeply([ map { RegTest::digest($_->req('GET',
                                                  "/v2/same/b1/blobs/$d")
                                          ->{content}) } $A, $B ],
                  [$d, $d], "same blob: $d served by both");
    }
}

lap('same blob');

###############################################################################
# the same tag pushed with different manifests through both hosts at once

{
    my $config = '{"race":"config"}';
    my @layers = map { bytes_of("race layer $_", 10_000) } 1 .. 12;

    $A->push_blob('race/tag', $_) for $config, @layers;

    my @res = in_parallel(4, sub {
        my ($k) = @_;
        my $t = $h[ $k % 2 ];
        my @out;

        for my $n (0 .. 3) {
            my $m = manifest_of($config, $layers[ ($k + $n) % 12 ],
                                $layers[ ($k * 2 + $n + 1) % 12 ]) . "\n"
                    . (' ' x ($k * 4 + $n));
            my $r = $t->push_manifest('race/tag', 'latest', $m, $OCI);
            die "PUT race/tag:latest: $r->{status} $r->{content}\n"
                unless $r->{status} == 201;
            push @out, RegTest::digest($m);
        }

        return @out;
    });

    is_deeply([ failures(@res) ], [], 'same tag: every PUT got 201');

    my %accepted = map { $_ => 1 } map { @$_ } @res;
    is(scalar keys %accepted, 16, 'same tag: 16 different manifests');

    # a tag just moved by the other host: seen within the link cache's 1 s
    sleep 1.5;

    my @now = map {
        $_->req('GET', '/v2/race/tag/manifests/latest',
                headers => { Accept => $OCI })
    } $A, $B;

    is($now[0]{status}, 200, 'same tag: A serves the tag');
    is($now[1]{headers}{'docker-content-digest'},
       $now[0]{headers}{'docker-content-digest'},
       'same tag: both hosts name the same manifest');
    ok($accepted{ $now[0]{headers}{'docker-content-digest'} // '' },
       'same tag: it is one of those pushed');
    is(RegTest::digest($now[1]{content}),
       $now[0]{headers}{'docker-content-digest'},
       'same tag: B serves its bytes, not a torn mix');

    my @missing = grep {
        $B->req('HEAD', "/v2/race/tag/manifests/$_",
                headers => { Accept => $OCI })->{status} != 200
    } sort keys %accepted;
    is_deeply(\@missing, [], 'same tag: every revision pushed is kept');

    $pushed{'race/tag'}{latest} = $now[0]{headers}{'docker-content-digest'};
}

lap('same tag');

###############################################################################
# chunked uploads alternating between the hosts, three at once

{
    my @res = in_parallel(3, sub {
        my ($k) = @_;
        my $bytes = bytes_of("alternating $k", 200_000 + 7 * $k);
        return upload_alternating("alt/u$k", $bytes, 5, $k % 2);
    });

    is_deeply([ failures(@res) ], [],
              'alternating: three uploads of five chunks each completed');

    for my $k (0 .. 2) {
        my $d = RegTest::digest(bytes_of("alternating $k", 200_000 + 7 * $k));
        is($res[$k][0], $d, "alternating: upload $k has its digest");
        for my $t ($A, $B) {
            my $r = $t->req('GET', "/v2/alt/u$k/blobs/$d");
            is(RegTest::digest($r->{content}), $d,
               "alternating: upload $k served by port " . $t->port);
        }
    }
}

lap('alternating');

###############################################################################
# the job lease across hosts: B may not start a gc while A's fsck runs

{
    $A->push_blob('lease/big', bytes_of('big', 3 * 1024 * 1024));

    my $r = $A->req('POST', '/_registry/fsck?rehash=1&rate=1m');
    is($r->{status}, 202, 'lease: a slow fsck starts on A');
    my $id = decode_json($r->{content})->{id};

    $r = $B->req('POST', '/_registry/gc?grace=0s');
    is($r->{status}, 409, 'lease: B refuses a gc meanwhile');
    like($r->{content}, qr/"JOB_RUNNING".*"\Q$id\E"/s,
         "lease: B names A's job");

    # the store so far is clean (B takes the lease the fsck drops below)
    my $rep = wait_job($A, $id);
    is($rep->{problems_total}, 0, 'lease: the fsck finds no problem')
        or diag $json->encode($rep->{problems});
}

lap('lease');

###############################################################################
# a gc on A while B pushes

{
    # garbage: orphan blobs, and an image whose manifest is deleted
    my @orphans = map { $B->push_blob('gc/orphans', bytes_of("orphan $_", 999))
                      } 1 .. 2;
    my $gone_layer = bytes_of('layer of a deleted image', 4096);
    my $gone = manifest_of('{"gone":1}', $gone_layer);
    $B->push_blob('gc/gone', $_) for '{"gone":1}', $gone_layer;
    is($B->push_manifest('gc/gone', 'x', $gone, $OCI)->{status}, 201,
       'gc: an image to delete');
    is($A->req('DELETE', '/v2/gc/gone/manifests/' . RegTest::digest($gone))
         ->{status}, 202, 'gc: deleted through A');

    # garbage older than the grace of 0 s, which counts whole seconds
    sleep 1.1;

    # B pushes images one after the other until A's gc has ended
    my $stop = $g->dir . '/stop-pushing';
    my $pipe_rd;
    pipe($pipe_rd, my $pipe_wr) or die "pipe: $!";
    my $pid = fork() // die "fork: $!";

    if ($pid == 0) {
        close $pipe_rd;
        $pipe_wr->autoflush(1);
        for my $n (1 .. 100) {
            my $config = "{\"gc\":$n}";
            my $layer = bytes_of("gc layer $n", 50_000);
            my $ok = eval {
                $B->push_blob("gc/p$n", $_) for $config, $shared[0];
                upload_alternating("gc/p$n", $layer, 2, 1);
                # a client slow between its blobs and its manifest
                sleep 0.3;
                my $m = manifest_of($config, $shared[0], $layer);
                my $r = $B->push_manifest("gc/p$n", 'v1', $m, $OCI);
                die "PUT gc/p$n:v1: $r->{status} $r->{content}\n"
                    unless $r->{status} == 201;
                print $pipe_wr "gc/p$n v1 " . RegTest::digest($m) . "\n";
            };
            print $pipe_wr "FAIL $@" unless $ok;
            last if -e $stop && $n >= 2;
        }
        close $pipe_wr;
        POSIX::_exit(0);
    }

    close $pipe_wr;
    my $first = <$pipe_rd>;

    my $rep = run_job($A, 'gc', 'grace=0s');
    note('gc while B pushed: ' . $json->encode($rep));
    ok(waitpid($pid, POSIX::WNOHANG()) == 0, 'gc: ended while B pushed');
    open(my $fh, '>', $stop) or die "$stop: $!";
    close $fh;

    my %tomb = map { $_ => 1 } @{ $rep->{tombstoned} };
    is_deeply([ grep { !$tomb{$_} } @orphans, RegTest::digest($gone_layer) ],
              [], 'gc: the garbage is tombstoned');

    my @lines = ($first // (), <$pipe_rd>);
    chomp @lines;
    waitpid($pid, 0);

    is_deeply([ grep { /^FAIL/ } @lines ], [], 'gc: every push of B worked');
    ok(@lines >= 2, 'gc: B pushed ' . scalar(@lines) . ' images');

    for (grep { !/^FAIL/ } @lines) {
        my ($repo, $tag, $d) = split ' ';
        $pushed{$repo}{$tag} = $d;
    }

    # the tombstones B's pushes did not bring back go for good, once older
    # than the grace of 0 s and the gc's second of slack (file times
    # count from the first pass, which may have ended under a second ago)
    sleep 2.1;
    $rep = run_job($A, 'gc', 'grace=0s');
    note('gc, second pass: ' . $json->encode($rep));
    my %removed = map { $_ => 1 } @{ $rep->{removed} };
    is_deeply([ grep { !$removed{$_} } @orphans ], [],
              'gc: a second pass removes the orphans');

    sleep 1.5;                  # B's link cache
    is_deeply([ map { $B->req('GET', "/v2/gc/orphans/blobs/$_")->{status} }
                @orphans ], [404, 404], 'gc: B serves the orphans no more');
    ok(!-e $B->blob_path($orphans[0]), 'gc: gone from mount B');

    for my $n (1 .. 100) {
        next unless $pushed{"gc/p$n"};
        my $r = $B->req('GET', "/v2/gc/p$n/manifests/v1",
                        headers => { Accept => $OCI });
        my @bad = grep {
            RegTest::digest($A->req('GET', "/v2/gc/p$n/blobs/$_")->{content})
                ne $_
        } blobs_of($r->{content});
        is_deeply(\@bad, [], "gc: gc/p$n:v1 is whole on A");
    }
}

lap('gc');

###############################################################################
# afterwards: fsck is clean, both serve identical content

{
    # (the blobs' bytes: rehashed by the fsck above, and below each one
    # served is hashed)
    my $rep = run_job($B, 'fsck', '');
    is($rep->{problems_total}, 0, 'fsck on B: no problems')
        or diag $json->encode($rep->{problems});

    # repositories created through the other host: listed after 2 x refresh
    sleep 3;

    my @repos = sort keys %pushed;
    my %catalog = map { $_ => 1 } @{ catalog($A) };
    is_deeply([ grep { !$catalog{$_} } @repos ], [],
              'A lists every repository pushed');
    is_deeply(catalog($B), catalog($A), 'A and B list the same repositories');

    my $sa = served($A, @repos);
    my $sb = served($B, @repos);

    is_deeply($sb, $sa, 'A and B serve the same tags, manifests and blobs');

    my @wrong;
    for my $repo (@repos) {
        for my $tag (keys %{ $pushed{$repo} }) {
            push @wrong, "$repo:$tag"
                unless ($sa->{$repo}{manifests}{$tag}[0] // '')
                       eq $pushed{$repo}{$tag};
        }
        for my $d (keys %{ $sa->{$repo}{blobs} || {} }) {
            push @wrong, "$repo\@$d" unless $sa->{$repo}{blobs}{$d} eq $d;
        }
    }
    is_deeply(\@wrong, [], 'every tag names what was pushed, every blob '
                           . 'hashes to its digest');
}

lap('fsck and comparison');

# how often a host found a file the other had replaced (ESTALE), and
# looked it up again (store_files.c)
note(sprintf 'stale lookups retried: A %d, B %d',
     map { scalar(() = $_->error_log =~ /went stale, looked up again/g) } @h);

$_->stop for @h;

done_testing();

#!/usr/bin/perl

# Crash loops: 50 rounds, each of concurrent chunked and monolithic blob
# pushes, an image push (blobs and a tagged manifest) and a garbage
# collection, during which a worker, or the master with all its workers
# (a host's crash; in half of those the workers a moment after the
# master, serving on meanwhile), is killed with -9 at a random moment;
# nginx is restarted where it was the master.  After each round:
#   - a blob push that got 201 reads back whole; one that did not is
#     there whole or not at all;
#   - an interrupted chunked upload either resumes at a chunk boundary no
#     earlier than its last acknowledged chunk (and then completes, with
#     the right digest) or is BLOB_UPLOAD_UNKNOWN;
#   - an image whose manifest got 201 pulls in full;
#   - the store checks clean (t/lib/RegStoreCheck.pm, fsck included),
#     a gc the kill cut short included: it removes a blob's layer links
#     before its bytes, so it leaves no link to missing bytes.
# At the end, after a gc of grace 0, every image accepted in any round
# still pulls in full.  t/crash.t kills at chosen points; this one at
# random ones, many times.  About a minute on a quiet machine.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use POSIX ();
use File::Temp qw(tempdir);
use Time::HiRes qw(sleep time);
use Digest::SHA qw(sha256);

use lib 't/lib';
use RegTest;
use RegGc;
use RegStoreCheck;

my $ROUNDS = 50;
my $OCI = 'application/vnd.oci.image.manifest.v1+json';

# the kills are the test's own doing
my $t = RegTest->new(workers => 2, delete => 1, listen_extra => 'reuseport',
                     expect_in_log => qr/exited on signal 9/,
                     RegGc::options());

my $start = time;
my (@images, %kills, %seen);

# runs each code ref in a child at once; their return values (strings;
# "died: ..." for a die), in order
sub parallel {
    my (@code) = @_;
    my $dir = tempdir(DIR => $t->dir);
    my @pids;

    for my $i (0 .. $#code) {
        my $pid = fork() // die "fork: $!";
        if ($pid == 0) {
            my $out = eval { $code[$i]->() } // "died: $@";
            RegTest::spew("$dir/$i", $out);
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }

    return sub {
        waitpid($_, 0) for @pids;
        return map { RegTest::slurp("$dir/$_") } 0 .. $#code;
    };
}

sub bytes_of {
    my ($tag, $len) = @_;
    my $b = '';
    $b .= sha256($tag . length $b) while length $b < $len;
    return substr($b, 0, $len);
}

# a chunked upload in three chunks: JSON {loc, acked, put, cuts}
sub chunked {
    my ($name, $blob) = @_;
    my $n = length $blob;
    my @cuts = (0, int($n / 3) + 1, int(2 * $n / 3) + 7, $n);
    my %rep = (cuts => \@cuts, acked => 0, put => 0);

    my $r = $t->req('POST', "/v2/$name/blobs/uploads/");
    return encode_json(\%rep) unless $r->{status} == 202;
    $rep{loc} = $r->{headers}{location};

    for my $k (0 .. 2) {
        my ($from, $to) = @cuts[$k, $k + 1];
        $r = $t->req('PATCH', $rep{loc},
                     content => substr($blob, $from, $to - $from),
                     headers => { 'Content-Range' => "$from-" . ($to - 1) });
        return encode_json(\%rep) unless $r->{status} == 202;
        $rep{acked} = $to;
    }

    $r = $t->req('PUT', "$rep{loc}?digest=" . RegTest::digest($blob));
    $rep{put} = $r->{status};

    return encode_json(\%rep);
}

sub mono {
    my ($name, $blob) = @_;
    my $r = $t->req('POST', "/v2/$name/blobs/uploads/?digest="
                    . RegTest::digest($blob), content => $blob);
    return $r->{status};
}

# config, layer and a tagged manifest: the manifest's status, its name,
# tag, digest and the blobs, as JSON
sub image {
    my ($name, $tag, $layer) = @_;
    my $cfg = qq({"architecture":"amd64","os":"linux","tag":"$tag"});
    my %rep = (name => $name, tag => $tag, status => 0,
               blobs => [ $cfg, $layer ]);

    for my $b ($cfg, $layer) {
        return encode_json(\%rep) unless mono($name, $b) == 201;
    }

    my $m = JSON::PP->new->canonical->encode({
        schemaVersion => 2, mediaType => $OCI,
        config => { mediaType => 'application/vnd.oci.image.config.v1+json',
                    digest => RegTest::digest($cfg), size => length $cfg },
        layers => [ { mediaType => 'application/vnd.oci.image.layer.v1.tar',
                      digest => RegTest::digest($layer),
                      size => length $layer } ],
    });
    $rep{digest} = RegTest::digest($m);
    $rep{status} = $t->push_manifest($name, $tag, $m, $OCI)->{status};

    return encode_json(\%rep);
}

# '' when the image pulls in full, else what is missing
sub image_missing {
    my ($img) = @_;
    my $miss = '';

    my $r = $t->req('GET', "/v2/$img->{name}/manifests/$img->{tag}",
                    headers => { Accept => $OCI });
    $miss .= " $img->{tag}: $r->{status}"
        unless $r->{status} == 200
               && RegTest::digest($r->{content}) eq $img->{digest};

    for my $b (@{ $img->{blobs} }) {
        my $d = RegTest::digest($b);
        $r = $t->req('GET', "/v2/$img->{name}/blobs/$d");
        $miss .= " $d: $r->{status}"
            unless $r->{status} == 200 && $r->{content} eq $b;
    }

    return $miss;
}

# the blob reads back whole (1), is not there (0), or is wrong (-1)
sub blob_state {
    my ($name, $blob) = @_;
    my $r = $t->req('GET', "/v2/$name/blobs/" . RegTest::digest($blob));
    return $r->{status} == 404 ? 0
         : $r->{status} == 200 && $r->{content} eq $blob ? 1 : -1;
}

# an interrupted upload: '' when it resumed and completed, or is unknown
# (and its blob whole or absent); else what went wrong
sub check_upload {
    my ($name, $blob, $rep) = @_;

    return '' unless $rep->{loc};         # the POST itself failed

    my $state = blob_state($name, $blob);

    if ($rep->{put} == 201) {
        $seen{'uploads completed'}++;
        return $state == 1 ? '' : "201 but blob state $state";
    }

    my $r = $t->req('GET', $rep->{loc});

    if ($r->{status} == 404) {
        return "404 but " . RegTest::error_code($r)
            unless RegTest::error_code($r) eq 'BLOB_UPLOAD_UNKNOWN';
        $seen{'uploads unknown'}++;
        return $state >= 0 ? '' : 'unknown session, wrong blob';
    }

    return "GET session: $r->{status}" unless $r->{status} == 204;

    # "0-0" is an empty session (distribution's way), never a 1-byte one
    # here: no chunk ends at 1
    my ($end) = ($r->{headers}{range} // '') =~ /^0-(\d+)$/;
    my $at = !defined $end || $end == 0 ? 0 : $end + 1;
    my @cuts = @{ $rep->{cuts} };

    return "resumes at $at: no chunk boundary (@cuts), acked $rep->{acked}"
        unless grep { $_ == $at } @cuts and $at >= $rep->{acked};

    my $n = length $blob;
    if ($at < $n) {
        $r = $t->req('PATCH', $rep->{loc}, content => substr($blob, $at),
                     headers => { 'Content-Range' => "$at-" . ($n - 1) });
        return "resume PATCH at $at: $r->{status}" unless $r->{status} == 202;
    }

    $r = $t->req('PUT', "$rep->{loc}?digest=" . RegTest::digest($blob));
    return "resume PUT: $r->{status} $r->{content}" unless $r->{status} == 201;

    $seen{'uploads resumed'}++;
    return blob_state($name, $blob) == 1 ? '' : 'resumed, but blob wrong';
}

# the round's gc, if it started, is over: its state ('done', 'failed',
# 'cancelled', or 'cut short' when the worker running it was killed), or
# '' when none started
sub gc_state {
    my ($id) = @_;

    return '' unless $id;

    for (1 .. 600) {
        my $r = $t->req('GET', "/admin/jobs/$id");
        return 'cut short' unless $r->{status} == 200;
        my $j = decode_json($r->{content});
        return $j->{state} unless $j->{state} eq 'running';
        return 'cut short' unless $j->{pid} && kill 0, $j->{pid};
        sleep 0.05;
    }

    return 'still running';
}

for my $round (1 .. $ROUNDS) {
    my @chunked = map { bytes_of("c $round $_", 60_000 + int(rand 40_000)) }
                  0, 1;
    my @mono = map { bytes_of("m $round $_", 30_000 + int(rand 60_000)) }
               0, 1;
    my $layer = bytes_of("l $round", 20_000 + int(rand 20_000));

    # two of the blobs are shared with other rounds' pushes
    $mono[1] = bytes_of('shared ' . ($round % 3), 50_000);

    my $wait = parallel(
        (map { my $k = $_; sub { chunked("crash/c$k", $chunked[$k]) } } 0, 1),
        (map { my $k = $_; sub { mono("crash/m$k", $mono[$k]) } } 0, 1),
        sub { image('crash/img', "r$round", $layer) },
        sub {
            sleep rand 0.3;
            my $r = $t->req('POST', '/admin/gc?grace=30s');
            $r->{status} == 202 ? decode_json($r->{content})->{id} : '';
        },
    );

    # the kill: the master (and with it the host) in a third of the rounds
    sleep 0.02 + rand 0.5;
    my $what = rand() < 1 / 3 ? 'master' : 'worker';
    $kills{$what}++;

    if ($what eq 'master') {
        $t->crash(after => rand() < 0.5 ? 0 : rand 0.3);
    } else {
        my @w = $t->pids_of_workers;
        kill 'KILL', $w[rand @w] if @w;
    }

    my @out = $wait->();
    $t->restart if $what eq 'master';

    # a gc cut short by the kill leaves the store as clean as one that
    # ends: the store is checked as it is
    $seen{'gc runs cut short'}++ if gc_state($out[5]) eq 'cut short';

    my $bad = '';

    for my $k (0, 1) {
        my $rep = eval { decode_json($out[$k]) }
            or do { $bad .= " chunked $k: $out[$k];"; next };
        my $why = check_upload("crash/c$k", $chunked[$k], $rep);
        $bad .= " chunked $k: $why;" if $why;
    }

    for my $k (0, 1) {
        my $state = blob_state("crash/m$k", $mono[$k]);
        $bad .= " mono $k: $out[2 + $k] but state $state;"
            if $state < 0 || ($out[2 + $k] eq '201' && $state != 1);
        $seen{'monolithic pushes cut'}++ if $out[2 + $k] ne '201';
    }

    my $img = eval { decode_json($out[4]) };
    if (!$img) {
        $bad .= " image: $out[4];";
    } elsif ($img->{status} == 201) {
        push @images, $img;
        my $miss = image_missing($img);
        $bad .= " image:$miss;" if $miss;
    }

    is($bad, '', "round $round ($what killed): what was acknowledged is "
                 . 'there, uploads resume or are unknown');

    # fsck (it waits for a gc still running) every 10 rounds, the walk of
    # the store in every one
    RegStoreCheck::check($t, name => "round $round",
                         $round % 10 ? () : (admin => '/admin/'));
}

diag(sprintf '%d rounds (%d master kills, %d worker kills), %d images, '
             . '%.1f s; %s', $ROUNDS, $kills{master} // 0,
             $kills{worker} // 0, scalar @images, time - $start,
             join ', ', map { "$seen{$_} $_" } sort keys %seen);

ok(@images >= $ROUNDS / 4, 'images were accepted in many rounds');

RegGc::run_gc($t, grace => 0);
is(join(',', grep { $_ } map { image_missing($_) } @images), '',
   'after a gc of grace 0 every image accepted in a round pulls in full');
RegStoreCheck::check($t, name => 'at the end', admin => '/admin/');

$t->stop;

done_testing();

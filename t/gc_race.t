#!/usr/bin/perl

# A manifest PUT that answers 201 leaves every blob it names in blobs/,
# whatever a concurrent garbage collection does (issue 18).  Collections
# of grace 0 run back to back in a server of 2 workers while 8 pushers
# put manifests into one repository, each with 32 new tags: the pushes
# queue on the repository's lock, so a PUT waits there seconds after it
# checked (and refreshed) its blobs, long enough for one run to move a
# blob aside and a later one to delete it before the manifest is
# published.  Right after each 201, its manifest and every blob it names
# must be in the store and pull whole.  The loop is bounded (25 s, about
# 45 s in all); without store_manifest.c's manifest_hold() most accepted
# manifests lost their blobs (36 of 39 in one run).

use strict;
use warnings;

use Test::More;
use JSON::PP;
use POSIX ();
use File::Temp qw(tempdir);
use Time::HiRes qw(time sleep);

use lib 't/lib';
use RegTest;
use RegGc;
use RegStoreCheck;

my $OCI = 'application/vnd.oci.image.manifest.v1+json';
my $SECONDS = 25;
my $PUSHERS = 8;
my $NAME = 'race/one';

my $t = RegTest->new(workers => 2, delete => 1, RegGc::options());
my $dir = tempdir(DIR => $t->dir);

sub manifest_of {
    my ($config, @layers) = @_;
    return JSON::PP->new->canonical->encode({
        schemaVersion => 2,
        mediaType => $OCI,
        config => { mediaType => 'application/vnd.oci.image.config.v1+json',
                    digest => RegTest::digest($config),
                    size => length $config },
        layers => [ map { { mediaType =>
                                'application/vnd.oci.image.layer.v1.tar',
                            digest => RegTest::digest($_),
                            size => length $_ } } @layers ],
    });
}

# '' when the manifest and each blob are in blobs/ and pull whole
sub missing {
    my ($md, @blobs) = @_;
    my $miss = '';

    my $r = $t->req('GET', "/v2/$NAME/manifests/$md",
                    headers => { Accept => $OCI });
    $miss .= " manifest $md $r->{status}"
        unless $r->{status} == 200 && RegTest::digest($r->{content}) eq $md;

    for my $blob (@blobs) {
        my $d = RegTest::digest($blob);
        $miss .= " $d not in blobs/" unless -f $t->blob_path($d);
        $r = $t->req('GET', "/v2/$NAME/blobs/$d");
        $miss .= " $d $r->{status}"
            unless $r->{status} == 200 && $r->{content} eq $blob;
    }

    return $miss;
}

# one image: its blobs, then its manifest with 32 tags; "" (refused, as
# a blob collected before its manifest may be), "ok <digest>" or
# "lost ..."
sub push_once {
    my ($i, $n) = @_;
    my $cfg = qq({"architecture":"amd64","os":"linux","n":"$i $n"});
    my $layer = "layer of pusher $i, image $n " . ('x' x 4096);

    for my $blob ($cfg, $layer) {
        my $r = $t->req('POST', "/v2/$NAME/blobs/uploads/?digest="
                        . RegTest::digest($blob), content => $blob);
        die "blob: $r->{status} $r->{content}\n" unless $r->{status} == 201;
    }

    my $m = manifest_of($cfg, $layer);
    my $md = RegTest::digest($m);
    my $tags = join "&", map { "tag=p$i-$n-$_" } 1 .. 32;
    my $r = $t->req('PUT', "/v2/$NAME/manifests/$md?$tags", content => $m,
                    headers => { 'Content-Type' => $OCI });

    return '' if RegTest::error_code($r) eq 'MANIFEST_BLOB_UNKNOWN';
    die "PUT: $r->{status} $r->{content}\n" unless $r->{status} == 201;

    my $miss = missing($md, $m, $cfg, $layer);
    return $miss ? "lost$miss" : "ok $md";
}

sub pusher {
    my ($i) = @_;
    my ($ok, $refused, @lost) = (0, 0);
    my $end = time + $SECONDS;

    for (my $n = 0; time < $end; $n++) {
        my $out = push_once($i, $n);
        if ($out eq '') {
            $refused++;
            next;
        }
        $ok++;
        push @lost, $out unless $out =~ /^ok /;
    }

    return join "\n", "accepted $ok refused $refused", @lost;
}

sub collector {
    my $runs = 0;

    until (-e "$dir/done") {
        my $j = RegGc::gc_job($t, grace => 0);
        die "gc $j->{state} " . ($j->{error} // '') . "\n"
            unless $j->{state} eq 'done';
        $runs++;
    }

    return "gc ran $runs";
}

my @pids;
for my $i (0 .. $PUSHERS) {
    my $pid = fork() // die "fork: $!";
    if ($pid == 0) {
        my $out = eval { $i == $PUSHERS ? collector() : pusher($i) }
                  // "died: $@";
        RegTest::spew("$dir/out.$i", $out);
        POSIX::_exit(0);
    }
    push @pids, $pid;
}

waitpid($_, 0) for @pids[0 .. $PUSHERS - 1];
RegTest::spew("$dir/done", '');
waitpid($pids[$PUSHERS], 0);

my @out = map { RegTest::slurp("$dir/out.$_") } 0 .. $PUSHERS;
my $gc = pop @out;
like($gc, qr/^gc ran [1-9]/, 'gc ran meanwhile');
diag($gc);

my ($accepted, @lost) = (0);
for my $out (@out) {
    my ($head, @rest) = split /\n/, $out;
    like($head, qr/^accepted \d+ refused \d+$/, 'a pusher pushed to its end');
    diag($head);
    $accepted += $1 if $head =~ /^accepted (\d+)/;
    push @lost, @rest;
}

# (refused: a blob collected before its manifest was put, or while it
# waited, which grace 0 allows; enough were accepted to race)
cmp_ok($accepted, '>=', $PUSHERS, 'manifests were accepted meanwhile');

my $first = join "\n", @lost > 10 ? @lost[0 .. 9] : @lost;
is(@lost ? scalar(@lost) . " lost, the first:\n$first" : '', '',
   "each of $accepted accepted manifests had its blobs right after its 201");

RegStoreCheck::check($t, admin => '/admin/', name => 'after the race');

$t->stop;

done_testing();

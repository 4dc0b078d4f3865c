#!/usr/bin/perl

# Many writers on one store: two nginx instances (their own prefixes and
# ports) with 4 workers each share one registry_root, and clients race on
# it: the same blob uploaded by 16 clients at once (monolithic and chunked,
# chunks alternating between the instances), the same tag pushed with 16
# different manifests at once while others read it, manifest PUT racing its
# DELETE, a mount racing the DELETE of the blob in its source, and garbage
# collection (grace 0) racing image pushes.  Afterwards the store is
# checked (t/lib/RegStoreCheck.pm: every blob hashes to its name, every
# link is whole and names existing bytes, no stray file, fsck clean), and
# a chunked upload opened on one instance continues on the other.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use POSIX ();
use File::Temp qw(tempdir);
use Digest::SHA qw(sha256);

use lib 't/lib';
use RegTest;
use RegGc;
use RegStoreCheck;

my $OCI = 'application/vnd.oci.image.manifest.v1+json';

my $root = tempdir('regtest-writers-store-XXXXXXXX', TMPDIR => 1,
                   CLEANUP => !$ENV{REGTEST_LEAVE});
my %opts = (workers => 4, delete => 1, listen_extra => 'reuseport',
            RegGc::options(root => $root));
my @ts = (RegTest->new(%opts), RegTest->new(%opts));
my ($a, $b) = @ts;

# runs $code->($i) in $n children at once (0 .. $n-1); each returns a
# string (a die returns "died: ..."): the strings, in order
sub parallel {
    my ($n, $code) = @_;
    my $dir = tempdir(DIR => $a->dir);
    my @pids;

    for my $i (0 .. $n - 1) {
        my $pid = fork() // die "fork: $!";
        if ($pid == 0) {
            my $out = eval { $code->($i) } // "died: $@";
            RegTest::spew("$dir/$i", $out);
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }

    waitpid($_, 0) for @pids;

    return map { RegTest::slurp("$dir/$_") } 0 .. $n - 1;
}

sub all_are {
    my ($want, $got, $name) = @_;
    is(join(',', grep { $_ ne $want } @$got), '', $name);
}

sub via { $ts[$_[0] % 2] }

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

# a chunked upload of $bytes in $n chunks, chunk $k through instance
# $first + $k: "ok" or what went wrong
sub chunked {
    my ($name, $bytes, $n, $first) = @_;

    my $r = via($first)->req('POST', "/v2/$name/blobs/uploads/");
    return "POST $r->{status}" unless $r->{status} == 202;
    my $loc = $r->{headers}{location};
    my $size = int(length($bytes) / $n) + 1;

    for (my ($k, $off) = (0, 0); $off < length $bytes; $k++, $off += $size) {
        my $part = substr($bytes, $off, $size);
        my $end = $off + length($part) - 1;
        $r = via($first + $k)->req('PATCH', $loc, content => $part,
                                   headers => { 'Content-Range' =>
                                                "$off-$end" });
        return "PATCH $off-$end $r->{status} $r->{content}"
            unless $r->{status} == 202 && $r->{headers}{range} eq "0-$end";
    }

    $r = via($first + 1)->req('PUT', "$loc?digest=" . RegTest::digest($bytes));
    return "PUT $r->{status} $r->{content}" unless $r->{status} == 201;

    return 'ok';
}

# ---- the same blob by 16 clients at once ----

my $same = join '', map { sha256("same $_") } 1 .. 65536;      # 2 MiB
my $sd = RegTest::digest($same);

my @out = parallel(16, sub {
    my ($i) = @_;
    return chunked('same/c' . ($i % 4), $same, 4, $i) if $i % 2;
    my $r = via($i / 2)->req('POST', '/v2/same/m' . ($i % 4)
                             . "/blobs/uploads/?digest=$sd", content => $same);
    return $r->{status} == 201 ? 'ok' : "POST $r->{status} $r->{content}";
});
all_are('ok', \@out, '16 clients push one blob, half of them chunked');

for my $name (map { ("same/m$_", "same/c" . ($_ + 1)) } 0, 2) {
    for my $t (@ts) {
        my $r = $t->req('GET', "/v2/$name/blobs/$sd");
        ok($r->{status} == 200 && $r->{content} eq $same,
           "the blob whole in $name on port " . $t->port);
    }
}

# ---- the same tag, 16 manifests at once, readers beside ----

my $config = '{"architecture":"amd64","os":"linux"}';
$a->push_blob('tag/race', $config);

my (@manifests, %pushed);
for my $i (0 .. 16) {
    my $layer = "layer $i " x 1000;
    $a->push_blob('tag/race', $layer);
    push @manifests, manifest_of($config, $layer);
    $pushed{ RegTest::digest($manifests[-1]) } = 1;
}

is($a->push_manifest('tag/race', 'latest', shift @manifests, $OCI)->{status},
   201, 'the tag before the race');

@out = parallel(20, sub {
    my ($i) = @_;

    if ($i < 16) {
        my $r = via($i)->push_manifest('tag/race', 'latest', $manifests[$i],
                                       $OCI);
        return $r->{status} == 201 ? 'ok' : "PUT $r->{status} $r->{content}";
    }

    # readers: every GET by tag is whole and one of the manifests
    for my $k (1 .. 25) {
        my $r = via($i + $k)->req('GET', '/v2/tag/race/manifests/latest',
                                  headers => { Accept => $OCI });
        my $d = RegTest::digest($r->{content});
        return "GET $r->{status} $d" unless $r->{status} == 200
            && $pushed{$d} && $r->{headers}{'docker-content-digest'} eq $d;
    }
    return 'ok';
});
all_are('ok', \@out, '16 pushes of one tag at once, 4 readers beside');

my $link = "$root/docker/registry/v2/repositories/tag/race/_manifests/tags/"
           . 'latest/current/link';
my $won = RegTest::slurp($link);
ok($pushed{$won}, 'the tag names one of the pushed manifests')
    or diag("link holds '$won'");

sleep 2;        # registry_link_cache valid=1s on the other instance
for my $t (@ts) {
    my $r = $t->req('GET', '/v2/tag/race/manifests/latest',
                    headers => { Accept => $OCI });
    is(RegTest::digest($r->{content}), $won,
       'GET by tag serves the winner on port ' . $t->port);
}

# ---- manifest PUT racing its DELETE ----

# each manifest exists (tagged) before its round: PUT again with the tag
# and DELETE by digest race; either order of the two leaves a tag that
# names an existing revision, or neither

my @pd = map { "put-delete $_ " x 500 } 0 .. 15;
$a->push_blob('pd', $_) for $config, @pd;
my @pdm = map { manifest_of($config, $_) } @pd;
is(join(',', map { $a->push_manifest('pd', "t$_", $pdm[$_], $OCI)->{status} }
             0 .. 15),
   join(',', (201) x 16), '16 manifests to race on');

@out = parallel(32, sub {
    my ($i) = @_;
    my $k = $i >> 1;
    my $d = RegTest::digest($pdm[$k]);

    if ($i % 2) {
        my $r = via($i)->req('DELETE', "/v2/pd/manifests/$d");
        return $r->{status} == 202 ? 'ok' : "DELETE $r->{status}";
    }
    my $r = via($i)->push_manifest('pd', "t$k", $pdm[$k], $OCI);
    return $r->{status} == 201 ? 'ok' : "PUT $r->{status} $r->{content}";
});
all_are('ok', \@out, '16 PUTs and 16 DELETEs of the same manifests at once');

my $torn = '';
for my $k (0 .. 15) {
    my $d = RegTest::digest($pdm[$k]);
    my $by_tag = $a->req('GET', "/v2/pd/manifests/t$k")->{status};
    my $by_digest = $a->req('GET', "/v2/pd/manifests/$d")->{status};
    $torn .= " t$k:$by_tag/$by_digest"
        unless $by_tag == $by_digest || ($by_tag == 404 && $by_digest == 200);
}
is($torn, '', 'after each race the tag names a revision that exists, '
              . 'or is gone');

# ---- a mount racing the DELETE of the blob in its source ----

my @mb = map { "mounted $_ " x 2000 } 0 .. 15;
$a->push_blob("mnt/src$_", $mb[$_]) for 0 .. 15;

@out = parallel(32, sub {
    my ($i) = @_;
    my $k = $i >> 1;
    my $d = RegTest::digest($mb[$k]);

    if ($i % 2) {
        my $r = via($i)->req('DELETE', "/v2/mnt/src$k/blobs/$d");
        return $r->{status} == 202 ? 'ok' : "DELETE $r->{status}";
    }
    my $r = via($i)->req('POST', "/v2/mnt/dst$k/blobs/uploads/?mount=$d"
                                 . "&from=mnt/src$k");
    return $r->{status} == 201 ? 'mounted'
         : $r->{status} == 202 ? 'upload'
         : "POST $r->{status} $r->{content}";
});
all_are('ok', [ map { $out[2 * $_ + 1] } 0 .. 15 ], '16 DELETEs of the blob');
is(join(',', grep { !/^(?:mounted|upload)$/ }
             map { $out[2 * $_] } 0 .. 15), '',
   '16 mounts at once: each mounted or offered an upload');

my $lost = '';
for my $k (0 .. 15) {
    my $d = RegTest::digest($mb[$k]);
    my $r = $b->req('GET', "/v2/mnt/dst$k/blobs/$d");
    my $got = $r->{status} == 200 && $r->{content} eq $mb[$k] ? 'mounted'
            : 'upload';
    $lost .= " dst$k:$out[2 * $k]/$r->{status}" if $got ne $out[2 * $k];
}
is($lost, '', 'a 201 mount serves the blob, a 202 one did not link it');
diag('mounts that won: ' . grep { $_ eq 'mounted' } @out);

# ---- garbage collection racing pushes ----

# 6 pushers push images (a layer shared by all, one of their own) through
# alternating instances while gc (grace 0) runs again and again on both:
# a blob pushed may be collected before its manifest (MANIFEST_BLOB_UNKNOWN
# then, and the pusher pushes again), but an accepted manifest must be
# pullable in full, at once (a put holds its blobs again after its
# revision link, store_manifest.c) and once the collections are over

my $shared = join '', map { sha256("shared $_") } 1 .. 4096;
my $gcdir = tempdir(DIR => $a->dir);

sub push_image_racing_gc {
    my ($i, $n) = @_;
    my $t = via($i + $n);
    my $name = 'gc/p' . ($i % 3);
    my $own = "own layer $i $n " . ('x' x (1000 * $n));
    my $cfg = qq({"architecture":"amd64","os":"linux","n":"$i $n"});

    for my $try (1 .. 5) {
        for my $blob ($cfg, $shared, $own) {
            my $r = $t->req('POST', "/v2/$name/blobs/uploads/?digest="
                            . RegTest::digest($blob), content => $blob);
            return "blob $r->{status} $r->{content}"
                unless $r->{status} == 201;
        }
        my $m = manifest_of($cfg, $shared, $own);
        my $r = $t->push_manifest($name, "i$i-$n", $m, $OCI);
        return "$name " . RegTest::digest($m) . " $cfg\n$own"
            if $r->{status} == 201;
        return "PUT $r->{status} $r->{content}"
            unless RegTest::error_code($r) eq 'MANIFEST_BLOB_UNKNOWN';
    }
    return 'PUT: MANIFEST_BLOB_UNKNOWN 5 times';
}

# an accepted image: '' when its manifest and blobs are all there
sub missing {
    my ($t, $rec) = @_;
    my ($head, $own) = split /\n/, $rec, 2;
    my ($name, $md, $cfg) = split / /, $head, 3;
    my $miss = '';

    my $r = $t->req('GET', "/v2/$name/manifests/$md",
                    headers => { Accept => $OCI });
    $miss .= " manifest $md $r->{status}"
        unless $r->{status} == 200 && RegTest::digest($r->{content}) eq $md;

    for my $blob ($cfg, $shared, $own) {
        my $d = RegTest::digest($blob);
        $r = $t->req('GET', "/v2/$name/blobs/$d");
        $miss .= " blob $d $r->{status}"
            unless $r->{status} == 200 && $r->{content} eq $blob;
    }

    return $miss;
}

# a pusher's images, then the pulls of them that failed while gc ran
sub pusher {
    my ($i) = @_;
    my @mine;
    my $lost = 0;

    for my $n (1 .. 8) {
        my $rec = push_image_racing_gc($i, $n);
        return $rec unless $rec =~ /^gc\//;
        push @mine, $rec;
        $lost += grep { missing(via($n), $_) } @mine;
    }

    return join "\0", @mine, "lost $lost";
}

@out = parallel(8, sub {
    my ($i) = @_;

    if ($i >= 6) {
        # collectors: both instances, one job per store at a time
        my $runs = 0;
        until (-e "$gcdir/done") {
            my $j = RegGc::gc_job(via($i), grace => 0);
            return "gc $j->{state} " . ($j->{error} // '')
                unless $j->{state} eq 'done';
            $runs++;
        }
        return "gc ran $runs";
    }

    # the collectors stop once every pusher is done, whatever its end
    my $out = eval { pusher($i) } // "died: $@";
    RegTest::spew("$gcdir/done.$i", '');
    my @done = glob("$gcdir/done.*");
    RegTest::spew("$gcdir/done", '') if @done == 6;
    return $out;
});

my @gc = splice @out, 6;
like($_, qr/^gc ran [1-9]/, 'gc ran on both instances meanwhile') for @gc;
diag(join ', ', @gc);

my @images = map { split /\0/ } @out;
my $pulls_lost = 0;
$pulls_lost += $_ for map { /^lost (\d+)$/ ? $1 : () } @images;
@images = grep { /^gc\// } @images;
is(scalar(@images), 48, '48 images accepted while gc ran')
    or diag(join "\n", grep { !/^gc\// } @out);
is($pulls_lost, 0, 'no pull of an accepted image failed while gc ran');

RegGc::run_gc($a, grace => 0);
is(join(',', grep { $_ } map { missing($b, $_) } @images), '',
   'every accepted image pullable in full after one more gc');

# ---- the store after it all ----

RegStoreCheck::check($a, admin => '/admin/', name => 'after the races');

# a chunked upload opened on one instance continues on the other
my $cont = join '', map { sha256("continue $_") } 1 .. 20000;
is(chunked('cont', $cont, 5, 0), 'ok',
   'a chunked upload alternates between the instances');
is($b->req('GET', '/v2/cont/blobs/' . RegTest::digest($cont))->{content},
   $cont, 'and reads back whole');

$_->stop for @ts;

done_testing();

#!/usr/bin/perl

# Online garbage collection (store_gc.c): images sharing layers, a
# multi-arch index, referrers of live and of deleted manifests, untagged
# revisions and orphan blobs; gc with and without delete_untagged removes
# EXACTLY the blobs the test computes as unreachable (first as tombstones,
# then for good on the second pass), and every tagged image still pulls
# with skopeo.  dry_run changes nothing; the grace keeps young blobs; a
# manifest put, a mount and an upload bring a tombstoned blob back; eight
# clients pushing while gc runs lose nothing.

use strict;
use warnings;

use Test::More;
use File::Find;
use File::Basename qw(dirname);
use File::Temp qw(tempdir);
use JSON::PP;
use POSIX ();
use Time::HiRes qw(sleep);

use lib 't/lib';
use RegTest;
use RegTools qw(need_tools skopeo_ok json_decode sha256_file);
use RegGc qw(run_gc);

need_tools(qw(skopeo));

my $OCI = 'application/vnd.oci.image.manifest.v1+json';
my $INDEX = 'application/vnd.oci.image.index.v1+json';
my $EMPTY = 'application/vnd.oci.empty.v1+json';

my $tmp = tempdir('gc-t-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

my $t = RegTest->new(delete => 1, RegGc::options());
my $V2 = $t->root . '/docker/registry/v2';
my $reg = '127.0.0.1:' . $t->port;

my $json = JSON::PP->new->canonical;

###############################################################################
# helpers

# an image (or artifact) of OCI type, by digest unless $tag; returns
# { name, digest, bytes, blobs => [manifest, config, layers...] }
sub img {
    my ($name, $tag, %o) = @_;

    my $config = $o{config}
        // '{"architecture":"' . ($o{arch} // 'amd64') . '","os":"linux",'
           . '"rootfs":{"type":"layers","diff_ids":[]},"n":"' . rand() . '"}';
    my @layers = @{ $o{layers} // ["layer of $name " . rand()] };

    my $c = $t->push_blob($name, $config);
    my @ld = map { $t->push_blob($name, $_) } @layers;

    my $m = {
        schemaVersion => 2,
        mediaType => $OCI,
        config => {
            mediaType => $o{config_type}
                         // 'application/vnd.oci.image.config.v1+json',
            digest => $c, size => length $config,
        },
        layers => [ map { {
            mediaType => 'application/vnd.oci.image.layer.v1.tar+gzip',
            digest => $ld[$_], size => length $layers[$_],
        } } 0 .. $#layers ],
    };

    $m->{artifactType} = $o{artifact} if $o{artifact};
    $m->{subject} = desc($o{subject}) if $o{subject};

    # a client slow between its blobs and its manifest
    sleep($o{pause}) if $o{pause};

    return put($name, $tag, $json->encode($m), $OCI, $c, @ld);
}

sub desc {
    my ($i) = @_;
    return { mediaType => $i->{type}, digest => $i->{digest},
             size => length $i->{bytes} };
}

sub put {
    my ($name, $tag, $bytes, $type, @blobs) = @_;

    my $d = RegTest::digest($bytes);
    my $r = $t->push_manifest($name, $tag // $d, $bytes, $type);

    die "PUT $name " . ($tag // $d) . ": $r->{status} $r->{content}\n"
        unless $r->{status} == 201;

    return { name => $name, digest => $d, bytes => $bytes, type => $type,
             blobs => [$d, @blobs] };
}

sub index_of {
    my ($name, $tag, @children) = @_;

    my $m = {
        schemaVersion => 2,
        mediaType => $INDEX,
        manifests => [ map { {
            %{ desc($_->[0]) },
            platform => { architecture => $_->[1], os => 'linux' },
        } } @children ],
    };

    return put($name, $tag, $json->encode($m), $INDEX);
}

# the digests whose bytes are in blobs/, and in the tombstones
sub blobs_in_store {
    my %s;
    for (glob("$V2/blobs/sha256/*/*/data")) {
        $s{"sha256:$1"} = 1 if m{/([0-9a-f]{64})/data$};
    }
    return \%s;
}

sub tombstones {
    my %s;
    for (glob("$V2/_ngx_tombstones/sha256/*")) {
        $s{"sha256:$1"} = 1 if m{/([0-9a-f]{64})$};
    }
    return \%s;
}

# the digests the runs' records of tombstones list (store_gc.c)
sub recorded {
    my %s;
    for my $f (glob("$V2/_ngx_tombstones/moved/*")) {
        $s{$_} = 1 for split /\n/, RegTest::slurp($f);
    }
    return \%s;
}

sub tombstone_of { return "$V2/_ngx_tombstones/sha256/" . substr($_[0], 7) }

# every file under the store, with size and mtime: what a dry run must
# leave as it is (the jobs' own reports and lease aside)
sub snapshot {
    my %s;
    find({ no_chdir => 1, wanted => sub {
        return if m{/_ngx_(jobs|tmp)(/|$)};
        my @st = lstat($_);
        $s{$_} = -d _ ? 'dir' : "$st[7] $st[9]";
    } }, $V2);
    return \%s;
}

# files made two hours old, so that grace 0 (plus the collector's second
# of slack) sees them as old without the test waiting
sub age {
    my (@files) = @_;
    my $then = time - 7200;
    if (!@files) {
        find({ no_chdir => 1, wanted => sub {
            utime($then, $then, $_) if -f $_;
        } }, grep { -d } map { "$V2/$_" }
                         qw(blobs repositories _ngx_tombstones));
        return;
    }
    utime($then, $then, @files);
}

# blobs/<alg>/<xx>/<hex>, the directory of the blob's data
sub blob_dir { return dirname($t->blob_path($_[0])) }

sub set_of { return { map { $_ => 1 } @_ } }
sub sorted { return [ sort keys %{ $_[0] } ] }

sub minus {
    my ($a, $b) = @_;
    return { map { $_ => 1 } grep { !$b->{$_} } keys %$a };
}

sub blob_size {
    my ($d) = @_;
    return -s $t->blob_path($d) // -s "$V2/_ngx_tombstones/sha256/"
                                      . substr($d, 7);
}

sub pulls_ok {
    my ($what, @refs) = @_;
    for my $ref (@refs) {
        my ($name, $tag, $all) = @$ref;
        (my $dir = "pull-$name-$tag-" . rand()) =~ s{[/.]}{_}g;
        $dir = "$tmp/$dir";
        skopeo_ok("$what: skopeo pulls $name:$tag",
                  'copy', ($all ? '--all' : ()), '--src-tls-verify=false',
                  "docker://$reg/$name:$tag", "oci:$dir:$tag");
    }
}

sub referrers {
    my ($name, $subject) = @_;
    my $r = $t->req('GET', "/v2/$name/referrers/$subject->{digest}");
    my $j = json_decode($r->{content}) || {};
    return [ sort map { $_->{digest} } @{ $j->{manifests} || [] } ];
}

###############################################################################
# the store

my ($L1, $L2, $L3, $L4) = map { "shared layer $_ " . rand() } 1 .. 4;

my $a1 = img('gc/a', 'v1', layers => [$L1, $L2]);
my $a2 = img('gc/a', 'v2', layers => [$L1, $L3]);
my $b1 = img('gc/b', 'latest', layers => [$L2, $L4]);
my $b2 = img('gc/b', 'old', layers => ["layer of b:old only"]);

my $m1 = img('gc/m', undef, arch => 'amd64');
my $m2 = img('gc/m', undef, arch => 'arm64');
my $ix = index_of('gc/m', 'multi', [$m1, 'amd64'], [$m2, 'arm64']);

my %artifact = (config => '{}', config_type => $EMPTY);
my $s1 = img('gc/a', undef, %artifact, artifact => 'application/x.sig',
             layers => ['signature of a:v1'], subject => $a1);
my $s2 = img('gc/a', undef, %artifact, artifact => 'application/x.sbom',
             layers => ['sbom of a:v2'], subject => $a2);
my $s3 = img('gc/m', undef, %artifact, artifact => 'application/x.sig',
             layers => ['signature of the index'], subject => $ix);

my $orphan = $t->push_blob('gc/a', 'an orphan blob ' . rand());

is($t->req('DELETE', '/v2/gc/b/manifests/old')->{status}, 202,
   'tag b:old deleted (its manifest stays, untagged)');
is($t->req('DELETE', "/v2/gc/a/manifests/$a2->{digest}")->{status}, 202,
   'manifest a:v2 deleted');

is_deeply(referrers('gc/a', $a1), [$s1->{digest}], 'a:v1 has its signature');

# the referrers index entry of a referrer (store_referrers.c)
sub referrer_entry {
    my ($name, $subject, $referrer) = @_;
    my ($alg, $hex) = split /:/, $subject->{digest};
    (my $file = $referrer->{digest}) =~ s/:/-/;
    return $t->root . "/docker/registry/v2/repositories/$name/_ngx_referrers/"
           . "$alg/$hex/$file";
}

ok(-f referrer_entry('gc/a', $a2, $s2),
   'the deleted image\'s sbom has its index entry');

my @images = ($a1, $a2, $b1, $b2, $m1, $m2, $ix, $s1, $s2, $s3);
my $all = set_of($orphan, map { @{ $_->{blobs} } } @images);

is_deeply(sorted(blobs_in_store()), sorted($all),
          'the store holds every blob pushed');

# live without delete_untagged: every revision; with it, what tags reach:
# a:v1 and its signature, b:latest, the index, its children and its
# signature (s2's subject was deleted, b2 is untagged)

my $live1 = set_of(map { @{ $_->{blobs} } } $a1, $b1, $b2, $m1, $m2, $ix,
                                             $s1, $s2, $s3);
my $live2 = set_of(map { @{ $_->{blobs} } } $a1, $b1, $m1, $m2, $ix,
                                             $s1, $s3);
my $gone1 = minus($all, $live1);
my $gone2 = minus($live1, $live2);

is_deeply(sorted($gone1),
          [ sort $a2->{digest}, $a2->{blobs}[1], RegTest::digest($L3),
                 $orphan ],
          'the test\'s model: a:v2\'s own blobs and the orphan are garbage');

###############################################################################
# dry run: reports, changes nothing

age();

{
    my $before = snapshot();
    my $rep = run_gc($t, grace => 0, dry_run => 1);

    ok($rep->{dry_run}, 'dry run: says so');
    is($rep->{blobs_tombstoned}, scalar keys %$gone1,
       'dry run: counts what it would move aside');
    is_deeply([ sort @{ $rep->{tombstoned} } ], sorted($gone1),
              'dry run: lists exactly the unreachable blobs');
    is($rep->{blobs_removed}, 0, 'dry run: nothing to delete yet');
    is($rep->{revisions_removed}, 0, 'dry run: no revision without '
       . 'delete_untagged');
    is($rep->{repositories}, 3, 'dry run: three repositories');
    is($rep->{manifests}, 9, 'dry run: nine manifests read');

    $rep = run_gc($t, grace => 0, dry_run => 1, delete_untagged => 1);
    is($rep->{revisions_removed}, 2,
       'dry run, delete_untagged: would remove two revisions');
    is_deeply([ sort map { $_->{digest} } @{ $rep->{revisions} } ],
              [ sort $b2->{digest}, $s2->{digest} ],
              'dry run, delete_untagged: b:old\'s and the orphaned sbom');
    is_deeply([ sort @{ $rep->{tombstoned} } ],
              sorted(minus($all, $live2)),
              'dry run, delete_untagged: and all their blobs');

    is_deeply(snapshot(), $before, 'dry run: the store is as it was');
}

###############################################################################
# gc without delete_untagged: tombstones first, then the second pass

{
    my $rep = run_gc($t, grace => 0);

    is($rep->{blobs_tombstoned}, scalar keys %$gone1, 'gc: tombstoned count');
    is($rep->{blobs_removed}, 0, 'gc: nothing deleted on the first pass');
    is_deeply(sorted(blobs_in_store()), sorted($live1),
              'gc: blobs/ holds exactly the live blobs');
    is_deeply(sorted(tombstones()), sorted($gone1),
              'gc: the unreachable ones are tombstones');
    is_deeply([ grep { !-d blob_dir($_) } sort keys %$gone1 ], [],
              'gc: their directories stay, empty, until the next run');
    is_deeply(sorted(recorded()), sorted($gone1),
              'gc: the run\'s record lists them');
    ok(-e $t->layer_link('gc/a', $orphan),
       'gc: the orphan\'s layer link stays while its bytes do');

    is($t->req('GET', "/v2/gc/a/blobs/$orphan")->{status}, 404,
       'gc: a tombstoned blob is not served');

    pulls_ok('after gc', ['gc/a', 'v1'], ['gc/b', 'latest'],
             ['gc/m', 'multi', 1]);
    is_deeply(referrers('gc/a', $a1), [$s1->{digest}],
              'after gc: a:v1 still has its signature');

    my $bytes = 0;
    $bytes += blob_size($_) for keys %$gone1;

    # their second grace counts from their record, not their own times
    age(map { tombstone_of($_) } keys %$gone1);
    $rep = run_gc($t, grace => 600);
    is($rep->{blobs_removed}, 0, 'old tombstones of a young record stay');
    is_deeply(sorted(tombstones()), sorted($gone1), '... all of them');

    age();
    $rep = run_gc($t, grace => 0);

    is($rep->{blobs_removed}, scalar keys %$gone1,
       'second pass: deletes the tombstones');
    is($rep->{bytes_freed}, $bytes, 'second pass: bytes freed');
    is_deeply([ sort @{ $rep->{removed} } ], sorted($gone1),
              'second pass: lists them');
    is($rep->{blobs_tombstoned}, 0, 'second pass: nothing else');
    is_deeply(sorted(tombstones()), [], 'second pass: no tombstone left');
    is_deeply([ grep { -e blob_dir($_) } sort keys %$gone1 ], [],
              'second pass: nor their directories');
    is_deeply(sorted(recorded()), [], 'second pass: nor their record');
    is_deeply(sorted(blobs_in_store()), sorted($live1),
              'second pass: blobs/ unchanged');
    is($rep->{links_removed}, 3,
       'second pass: the three dangling layer links of gc/a go');
    ok(!-e $t->layer_link('gc/a', $_), "second pass: no link to $_")
        for keys %$gone1;
    ok(-e $t->layer_link('gc/a', RegTest::digest($L1)),
       'second pass: the shared layer\'s link stays');

    pulls_ok('after the second pass', ['gc/a', 'v1'], ['gc/b', 'latest'],
             ['gc/m', 'multi', 1]);
    is($t->req('GET', "/v2/gc/b/manifests/$b2->{digest}",
               headers => { Accept => $OCI })->{status},
       200, 'the untagged b:old is still there');
}

###############################################################################
# delete_untagged

{
    age();
    my $rep = run_gc($t, grace => 0, delete_untagged => 1);

    is($rep->{revisions_removed}, 2, 'delete_untagged: two revisions');
    is_deeply(sorted(tombstones()), sorted($gone2),
              'delete_untagged: exactly their blobs are tombstones');
    is_deeply(sorted(blobs_in_store()), sorted($live2),
              'delete_untagged: blobs/ holds exactly the live blobs');
    is($t->req('GET', "/v2/gc/b/manifests/$b2->{digest}",
               headers => { Accept => $OCI })->{status},
       404, 'delete_untagged: b:old\'s manifest is gone');
    is($t->req('GET', "/v2/gc/m/manifests/$m1->{digest}",
               headers => { Accept => $OCI })->{status},
       200, 'delete_untagged: an index child is no untagged garbage');
    is_deeply(referrers('gc/a', $a1), [$s1->{digest}],
              'delete_untagged: the live image\'s signature stays');
    is_deeply(referrers('gc/m', $ix), [$s3->{digest}],
              'delete_untagged: the index\'s signature stays');
    is_deeply(referrers('gc/a', $a2), [],
              'delete_untagged: the deleted image\'s sbom is gone');
    ok(!-e referrer_entry('gc/a', $a2, $s2),
       'delete_untagged: and its index entry');
    ok(-f referrer_entry('gc/a', $a1, $s1),
       'delete_untagged: the live signature\'s entry stays');

    age();
    $rep = run_gc($t, grace => 0, delete_untagged => 1);

    is($rep->{blobs_removed}, scalar keys %$gone2,
       'delete_untagged, second pass: deletes them');
    is($rep->{links_removed}, 3,
       'delete_untagged, second pass: b:old\'s two links, the sbom\'s one');
    is_deeply(sorted(tombstones()), [], 'no tombstone left');
    is_deeply(sorted(blobs_in_store()), sorted($live2),
              'EXACTLY the live blobs are left');

    pulls_ok('after delete_untagged', ['gc/a', 'v1'], ['gc/b', 'latest'],
             ['gc/m', 'multi', 1]);

    for my $d (sort keys %$live2) {
        my $f = $t->blob_path($d);
        is(-f $f ? sha256_file($f) : '', $d, "intact: $d");
    }
}

###############################################################################
# a tombstone in no record (its run was cut short before writing one, or
# an older module made it) starts its second grace when a run finds it

{
    my $lost = RegTest::digest('a tombstone without a record ' . rand());
    RegTest::spew(tombstone_of($lost), 'its bytes');
    age(tombstone_of($lost));

    my $rep = run_gc($t, grace => 0);
    is($rep->{blobs_removed}, 0, 'unrecorded: kept by the run finding it');
    ok(-e tombstone_of($lost), 'unrecorded: still there');
    ok(recorded()->{$lost}, 'unrecorded: in that run\'s record now');

    age();
    $rep = run_gc($t, grace => 0);
    is_deeply($rep->{removed}, [$lost], 'unrecorded: the next run deletes it');
    ok(!-e tombstone_of($lost), 'unrecorded: gone');
    is_deeply(sorted(recorded()), [], 'unrecorded: no record left');
}

###############################################################################
# the grace keeps young blobs

{
    my $young = $t->push_blob('gc/a', 'a young orphan ' . rand());

    my $rep = run_gc($t, grace => 3600);
    is($rep->{blobs_tombstoned}, 0, 'grace: a young orphan is kept');
    ok(blobs_in_store()->{$young}, 'grace: its bytes are there');

    age($t->blob_path($young), $t->layer_link('gc/a', $young));
    $rep = run_gc($t, grace => 3600);
    is_deeply($rep->{tombstoned}, [$young],
              'grace: once older than the grace, it goes (only it)');
}

###############################################################################
# a manifest put, a mount and an upload bring a tombstone back

{
    my $r1 = img('gc/r', 'r1', layers => ['layer of r:r1 ' . rand()]);
    is($t->req('DELETE', "/v2/gc/r/manifests/$r1->{digest}")->{status}, 202,
       'r:r1 deleted');

    my $q = $t->push_blob('gc/q1', 'a blob to mount ' . rand());
    my $u = $t->push_blob('gc/q1', my $ubytes = 'a blob to upload ' . rand());

    age();
    my $rep = run_gc($t, grace => 0);
    is_deeply([ sort @{ $rep->{tombstoned} } ],
              [ sort @{ $r1->{blobs} }, $q, $u ],
              'restore: r:r1\'s blobs and two orphans are tombstones');

    my $r = $t->push_manifest('gc/r', 'r1', $r1->{bytes}, $OCI);
    is($r->{status}, 201, 'restore: the same manifest put again');
    ok(blobs_in_store()->{$_} && !tombstones()->{$_},
       "restore: $_ is back") for @{ $r1->{blobs} };
    pulls_ok('restore', ['gc/r', 'r1']);

    $r = $t->req('POST', "/v2/gc/q2/blobs/uploads/?mount=$q&from=gc/q1");
    is($r->{status}, 201, 'restore: a mount of a tombstoned blob');
    ok(blobs_in_store()->{$q} && !tombstones()->{$q},
       'restore: the mount brought it back');

    is($t->push_blob('gc/q1', $ubytes), $u, 'restore: upload it again');
    $r = $t->req('GET', "/v2/gc/q1/blobs/$u");
    ok($r->{status} == 200 && $r->{content} eq $ubytes,
       'restore: served again');

    age();
    $rep = run_gc($t, grace => 0);
    is_deeply([ sort @{ $rep->{tombstoned} } ], [ sort $q, $u ],
              'restore: nothing of r:r1 goes now, the orphans again');
    is_deeply($rep->{removed}, [$u],
              'restore: the stale tombstone of the uploaded blob goes');
    ok(blobs_in_store()->{$_}, "restore: $_ kept") for @{ $r1->{blobs} };
    pulls_ok('restore, after gc', ['gc/r', 'r1']);
}

###############################################################################
# gc while 8 clients push: every pushed image is complete afterwards

{
    # an old unreferenced layer every client pushes again
    my $base = "a base layer every client pushes " . rand();
    my $based = $t->push_blob('gc/base', $base);
    age();

    my @kids;
    for my $k (1 .. 8) {
        pipe(my $rd, my $wr) or die "pipe: $!";
        my $pid = fork() // die "fork: $!";
        if ($pid == 0) {
            close $rd;
            my @out;
            for my $n (1 .. 6) {
                my $i = eval {
                    img("gc/p$k", "t$n",
                        config => "config $n of every client",
                        layers => [$base, "layer $k.$n " . rand(),
                                   "shared by $k " . ($n % 2)],
                        pause => ($n % 2) * 2);
                };
                push @out, $i ? "$i->{digest} $n" : "FAIL $@";
            }
            print $wr "$_\n" for @out;
            close $wr;
            POSIX::_exit(0);
        }
        close $wr;
        push @kids, [$pid, $rd, $k];
    }

    # The grace is the time a push may take from its first blob to its
    # manifest: a client's four blob POSTs (each fsync()ed) and its pause
    # of 2 s took more than 3 s + 1 s of slack on a loaded machine, and
    # a run then rightly took its first blob's link (MANIFEST_BLOB_UNKNOWN
    # at the PUT).  8 s keeps the race this test is about: the old base
    # layer, moved aside and brought back while clients push it again.
    my ($runs, $buried) = (0, 0);
    while (grep { !waitpid($_->[0], POSIX::WNOHANG()) } @kids) {
        $buried += run_gc($t, grace => 8)->{blobs_tombstoned};
        $runs++;
    }

    ok($runs >= 1, "concurrent: gc ran $runs times while clients pushed");
    note("concurrent: $buried blobs tombstoned while clients pushed");

    for my $kid (@kids) {
        my ($pid, $rd, $k) = @$kid;
        my @lines = <$rd>;
        chomp @lines;
        is(scalar(grep { !/^FAIL/ } @lines), 6,
           "concurrent: client $k pushed its six images")
            or diag join("\n", @lines);
        for (grep { !/^FAIL/ } @lines) {
            my ($d, $n) = split ' ';
            my $m = $t->req('GET', "/v2/gc/p$k/manifests/t$n",
                            headers => { Accept => $OCI });
            my $ok = $m->{status} == 200
                     && RegTest::digest($m->{content}) eq $d;
            my $j = $ok ? json_decode($m->{content}) : undef;
            for my $desc ($j ? ($j->{config}, @{ $j->{layers} }) : ()) {
                my $b = $t->req('GET', "/v2/gc/p$k/blobs/$desc->{digest}");
                $ok &&= $b->{status} == 200
                        && RegTest::digest($b->{content}) eq $desc->{digest};
            }
            ok($ok, "concurrent: gc/p$k:t$n is complete");
        }
    }

    age();
    run_gc($t, grace => 0);
    run_gc($t, grace => 0);
    pulls_ok('concurrent, after two more passes',
             map { ["gc/p$_", 't6'] } 1 .. 8);
    ok(blobs_in_store()->{$based}, 'concurrent: the base layer is live');
}

$t->stop;

done_testing();

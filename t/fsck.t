#!/usr/bin/perl

# fsck, the store checker, through the admin location (POST
# /_registry/fsck?repair=&rehash=&rate=, GET /_registry/jobs/<id>): a
# clean store (with a gc tombstone, a fresh temporary file and upload, a
# sha512 blob) has no problems, rehash reads every blob at the rate asked
# for (rate=1m over 3 MiB takes 2 s at least, a lower bound only) and its
# phase shows while it runs; a reload cancels a slow rehash.  Then a
# flipped blob byte (found with rehash only), a blob deleted under its
# link, a revision whose bytes are gone, a tag whose revision is gone, a
# manifest whose layer the repository does not link, an index whose child
# is no revision of the repository, an old temporary file, a stale upload,
# an old dangling referrers entry and symbolic links under repositories/
# and blobs/ are each found; repair removes exactly the garbage (the
# corrupt blob goes to quarantine; the manifests naming missing blobs
# stay), and every good image is still served.  The report lists the
# first 1000 problems and counts them all.

use strict;
use warnings;

use Test::More;
use File::Path qw(make_path remove_tree);
use JSON::PP;
use Time::HiRes qw(time sleep);
use Digest::SHA qw(sha512_hex);

use lib 't/lib';
use RegTest;

my $OCI_M = 'application/vnd.oci.image.manifest.v1+json';
my $OCI_I = 'application/vnd.oci.image.index.v1+json';

my $t = RegTest->new(
    delete => 1,
    location_extra => 'registry_upload_expire 1h;',
    server_extra => <<'EOF');
        location /_registry/ {
            registry_admin on;
            registry_root store;
        }
EOF
my $v2 = $t->root . '/docker/registry/v2';

sub hex_of { (my $h = $_[0]) =~ s/^sha\d+://; return $h; }

sub revision_dir {
    my ($name, $digest) = @_;
    return "$v2/repositories/$name/_manifests/revisions/sha256/"
           . hex_of($digest);
}

# sets a file's (or directory's) mtime $age seconds back
sub age {
    my ($age, @paths) = @_;
    my $then = time - $age;
    utime($then, $then, @paths) == @paths or die "utime @paths: $!";
}

# starts fsck with the options given (repair, rehash, rate): its id
sub start_fsck {
    my (%o) = @_;

    my $query = join '&', map { "$_=$o{$_}" } sort keys %o;
    my $r = $t->req('POST', '/_registry/fsck' . ($query ? "?$query" : ''));

    die "POST fsck: $r->{status} $r->{content}\n" unless $r->{status} == 202;

    return decode_json($r->{content})->{id};
}

# polls the job until it is no longer running (120 s at most): the job,
# and the running states seen on the way
sub wait_job {
    my ($id) = @_;
    my (@seen, $j);

    for (1 .. 1200) {
        $j = decode_json($t->req('GET', "/_registry/jobs/$id")->{content});
        return ($j, @seen) if $j->{state} ne 'running';
        push @seen, $j;
        sleep 0.1;
    }

    die "fsck $id still running after 120 s\n";
}

# runs fsck to its end: the report, the seconds it took and the running
# states seen
sub fsck {
    my (%o) = @_;

    my $start = time;
    my ($j, @seen) = wait_job(start_fsck(%o));

    die "fsck: $j->{state} " . ($j->{error} // '') . "\n"
        unless $j->{state} eq 'done';

    return ($j->{report}, time - $start, @seen);
}

# the problems of one kind, as "repository path digest repaired"
sub problems {
    my ($report, $kind) = @_;
    return grep { $_->{kind} eq $kind } @{ $report->{problems} };
}

my @KINDS = qw(link_to_missing_blob revision_to_missing_blob
               manifest_to_missing_blob index_to_missing_manifest
               tag_to_missing_manifest invalid_link stale_upload
               dangling_referrer orphaned_temp_file symlink corrupt_blob
               unreadable);

# the counts of the kinds that are not 0
sub counts {
    my ($report) = @_;
    return { map { $report->{$_} ? ($_ => $report->{$_}) : () } @KINDS };
}

###############################################################################

# ---- a clean store ----

my $good = $t->push_image('good/app', 'v1',
                          layers => ['good layer one ' x 10,
                                     'good layer two ' x 10]);
my $other = $t->push_image('lib/other', '1');
my $big = 'x' x (3 * 1024 * 1024);
my $r;
$t->push_blob('big/blob', $big);

# a sha512 blob: rehashed with its own algorithm

my $s512 = "a sha512 blob\n" x 100;
$r = $t->req('POST', '/v2/big/blob/blobs/uploads/?digest=sha512:'
                     . sha512_hex($s512),
             content => $s512,
             headers => { 'Content-Type' => 'application/octet-stream' });
is($r->{status}, 201, 'a sha512 blob pushed');

# what the gc leaves, a fresh temporary file and a fresh upload: no problem

make_path("$v2/_ngx_tombstones/sha256/ab");
RegTest::spew("$v2/_ngx_tombstones/sha256/ab/tomb", 'dead blob');
make_path("$v2/_ngx_tmp");
RegTest::spew("$v2/_ngx_tmp/0123456789abcdef0123456789abcdef", 'in use');

$r = $t->req('POST', '/v2/good/app/blobs/uploads/');
is($r->{status}, 202, 'a fresh upload');

my ($report, $took, @seen) = fsck(rehash => 1, rate => '1m');

is($report->{problems_total}, 0, 'clean store: no problems')
    or diag(explain($report->{problems}));
is_deeply(counts($report), {}, 'clean store: every count 0');
is_deeply($report->{problems}, [], 'clean store: no problem listed');
is($report->{repositories}, 3, 'clean store: 3 repositories');
is($report->{manifests_checked}, 2, 'clean store: 2 manifests checked');

# 2 configs, 3 layers, 2 manifests, the big blob, the sha512 one

is($report->{blobs_rehashed}, 9, 'clean store: every blob rehashed');
cmp_ok($report->{bytes_rehashed}, '>', length($big) + length($s512),
       'clean store: every byte rehashed');
cmp_ok($took, '>=', 2, 'rate=1m over 3 MiB takes 2 s at least');

# while it ran: the blobs phase, out of the 9 blobs the symlinks phase
# counted

my ($blobs) = grep { $_->{phase} eq 'blobs' } @seen;
ok($blobs, 'the blobs phase is seen while it runs');
is($blobs && $blobs->{total}, 9, 'the blobs phase: 9 blobs to rehash');

# a reload stops a slow rehash: the job is cancelled, and says so

my $id = start_fsck(rehash => 1, rate => '64k');
my $j;
for (1 .. 300) {
    $j = decode_json($t->req('GET', "/_registry/jobs/$id")->{content});
    last if ($j->{phase} // '') eq 'blobs' || $j->{state} ne 'running';
    sleep 0.1;
}
is($j->{phase}, 'blobs', 'a slow rehash runs');
$t->reload();
($j) = wait_job($id);
is($j->{state}, 'cancelled', 'a reload cancels it');
ok($j->{report}{cancelled}, 'its report says cancelled');
cmp_ok($j->{report}{bytes_rehashed}, '<', length $big,
       'it stopped before the end');

# ---- damage ----

# a flipped byte in a layer

my $corrupt = $t->push_image('corrupt/img', '1',
                             layers => ['a layer to corrupt ' x 20]);
my $victim = $t->blob_path($corrupt->{layers}[0]);
{
    open(my $fh, '+<', $victim) or die "$victim: $!";
    seek($fh, 5, 0);
    print $fh 'X';
    close $fh;
}

# a blob deleted under its link

my $gone = $t->push_image('gone/img', '1',
                          layers => ['a layer whose bytes go ' x 20]);
unlink $t->blob_path($gone->{layers}[0]) or die;

# a tag whose revision is gone

my $tagged = $t->push_image('tagged/img', 't1');
remove_tree(revision_dir('tagged/img', $tagged->{digest}));

# a manifest whose layer the repository does not link

my $unlinked = $t->push_image('unlinked/img', '1',
                              layers => ['a layer unlinked ' x 20]);
unlink $t->layer_link('unlinked/img', $unlinked->{layers}[0]) or die;

# a revision whose bytes are gone, tagged

my $bytes_gone = $t->push_image('bytes/img', 'r1');
unlink $t->blob_path($bytes_gone->{digest}) or die;

# an index whose child is no revision of the repository

my $child = $t->push_image('idx/app', 'c1');
my $index = JSON::PP->new->canonical->encode({
    schemaVersion => 2,
    mediaType => $OCI_I,
    manifests => [ { mediaType => $OCI_M, digest => $child->{digest},
                     size => length $child->{manifest} } ],
});
is($t->push_manifest('idx/app', 'i1', $index, $OCI_I)->{status}, 201,
   'an index pushed');
remove_tree(revision_dir('idx/app', $child->{digest}),
            "$v2/repositories/idx/app/_manifests/tags/c1");

# an old temporary file

RegTest::spew("$v2/_ngx_tmp/fedcba9876543210fedcba9876543210", 'orphan');
age(7200, "$v2/_ngx_tmp/fedcba9876543210fedcba9876543210");

# a stale upload (older than registry_upload_expire)

$r = $t->req('POST', '/v2/stale/img/blobs/uploads/');
is($r->{status}, 202, 'an upload to leave stale');
my ($stale_id) = $r->{headers}{location} =~ m{/uploads/([^/?]+)};
my $stale = "$v2/repositories/stale/img/_uploads/$stale_id";
age(7200, glob("$stale/*"), $stale);

# an old referrers entry whose revision is gone, and a fresh one

my $subject = "$v2/repositories/good/app/_ngx_referrers/sha256/"
              . hex_of($good->{digest});
make_path($subject);
my $dangling = "$subject/sha256-" . ('d' x 64);
my $pushing = "$subject/sha256-" . ('e' x 64);
RegTest::spew($dangling, '{}');
RegTest::spew($pushing, '{}');
age(7200, $dangling);

# symbolic links under repositories/ and blobs/

symlink('/etc', "$v2/repositories/good/app/_layers/sha256/evil") or die;
# where a prefix directory would be: one no blob of this test has taken
my ($prefix) = grep { !-e "$v2/blobs/sha256/$_" }
               map { sprintf '%02x', $_ } 0 .. 255;
symlink('../../../../repositories', "$v2/blobs/sha256/$prefix") or die;

($report) = fsck();

is_deeply(counts($report), {
    link_to_missing_blob => 1,
    revision_to_missing_blob => 1,
    manifest_to_missing_blob => 2,
    index_to_missing_manifest => 1,
    tag_to_missing_manifest => 2,
    orphaned_temp_file => 1,
    stale_upload => 1,
    dangling_referrer => 1,
    symlink => 2,
}, 'damage found without rehash: no corrupt blob')
    or diag(explain($report->{problems}));

my ($p) = problems($report, 'link_to_missing_blob');
is($p->{repository}, 'gone/img', 'blob deleted under a link: repository');
is($p->{digest}, $gone->{layers}[0], 'blob deleted under a link: digest');
is($p->{path}, 'repositories/gone/img/_layers/sha256/'
               . hex_of($gone->{layers}[0]) . '/link',
   'blob deleted under a link: path');
ok(!$p->{repaired}, 'blob deleted under a link: not repaired');

my @m = sort { $a->{repository} cmp $b->{repository} }
        problems($report, 'manifest_to_missing_blob');
is_deeply([ map { [ $_->{repository}, $_->{manifest}, $_->{digest} ] } @m ],
          [ [ 'gone/img', $gone->{digest}, $gone->{layers}[0] ],
            [ 'unlinked/img', $unlinked->{digest},
              $unlinked->{layers}[0] ] ],
          'manifests naming missing layers');
like($m[1]{detail}, qr/does not link/, 'a layer the repository does not link');

my @tags = sort { $a->{repository} cmp $b->{repository} }
           problems($report, 'tag_to_missing_manifest');
is_deeply([ map { [ $_->{repository}, $_->{digest} ] } @tags ],
          [ [ 'bytes/img', $bytes_gone->{digest} ],
            [ 'tagged/img', $tagged->{digest} ] ],
          'tags to missing manifests');
like($tags[1]{path}, qr{_manifests/tags/t1/current/link$},
     'tag to a missing manifest: path');
like($tags[1]{detail}, qr/no such revision/,
     'tag to a missing manifest: no revision');
like($tags[0]{detail}, qr/bytes are missing/,
     'tag to a manifest whose bytes are gone');

($p) = problems($report, 'revision_to_missing_blob');
is($p->{repository}, 'bytes/img', 'a revision without bytes: repository');
is($p->{digest}, $bytes_gone->{digest}, 'a revision without bytes: digest');

($p) = problems($report, 'index_to_missing_manifest');
is($p->{repository}, 'idx/app', 'an index naming a missing child');
is($p->{digest}, $child->{digest}, 'an index naming a missing child: child');
is($p->{manifest}, RegTest::digest($index),
   'an index naming a missing child: index');

($p) = problems($report, 'orphaned_temp_file');
is($p->{path}, '_ngx_tmp/fedcba9876543210fedcba9876543210',
   'the old temporary file, not the fresh one');

($p) = problems($report, 'stale_upload');
is($p->{path}, "repositories/stale/img/_uploads/$stale_id",
   'the stale upload, not the fresh one');

($p) = problems($report, 'dangling_referrer');
is($p->{path}, 'repositories/good/app/_ngx_referrers/sha256/'
               . hex_of($good->{digest}) . '/sha256-' . ('d' x 64),
   'the old dangling referrer, not the fresh one');

is_deeply([ sort map { $_->{path} } problems($report, 'symlink') ],
          [ "blobs/sha256/$prefix",
            'repositories/good/app/_layers/sha256/evil' ],
          'both symbolic links');

ok(!(grep { $_->{repaired} } @{ $report->{problems} }),
   'nothing repaired without repair');
ok(-l "$v2/blobs/sha256/$prefix" && -f $victim && -d $stale
   && -f $dangling && -f "$v2/_ngx_tmp/fedcba9876543210fedcba9876543210",
   'nothing removed without repair');

($report) = fsck(rehash => 1);

is($report->{corrupt_blob}, 1, 'rehash finds the flipped byte');
($p) = problems($report, 'corrupt_blob');
is($p->{digest}, $corrupt->{layers}[0], 'the corrupt blob');
like($p->{detail}, qr/hash to sha256:[0-9a-f]{64}/,
     'the corrupt blob: what it hashes to');
ok(-f $victim, 'the corrupt blob is kept without repair');

# ---- repair ----

($report) = fsck(repair => 1, rehash => 1);

my %repaired = map { $_->{kind} => ($_->{repaired} ? 1 : 0) }
               @{ $report->{problems} };
is_deeply(\%repaired, {
    link_to_missing_blob => 1,
    revision_to_missing_blob => 1,
    manifest_to_missing_blob => 0,
    index_to_missing_manifest => 0,
    tag_to_missing_manifest => 1,
    orphaned_temp_file => 1,
    stale_upload => 1,
    dangling_referrer => 1,
    symlink => 1,
    corrupt_blob => 1,
}, 'repair: the garbage repaired, the manifests naming missing blobs not')
    or diag(explain($report->{problems}));
is($report->{problems_repaired}, 9, 'repair: 9 problems repaired');
is($report->{tag_to_missing_manifest}, 1,
   'repair: the revision without bytes went with its tag');

ok(!-e $t->layer_link('gone/img', $gone->{layers}[0]),
   'the link to the missing blob is gone');
ok(-d revision_dir('gone/img', $gone->{digest}),
   'the manifest naming the missing blob stays');
ok(!-e "$v2/repositories/tagged/img/_manifests/tags/t1",
   'the tag to the missing manifest is gone');
ok(!-e revision_dir('bytes/img', $bytes_gone->{digest})
   && !-e "$v2/repositories/bytes/img/_manifests/tags/r1",
   'the revision without bytes is gone, with its tag');
ok(-e revision_dir('idx/app', RegTest::digest($index)),
   'the index naming a missing child stays');
is($t->req('GET', '/v2/tagged/img/tags/list')->{status}, 200,
   'the repository of the removed tag still answers');
ok(!-e "$v2/_ngx_tmp/fedcba9876543210fedcba9876543210",
   'the old temporary file is gone');
ok(-e "$v2/_ngx_tmp/0123456789abcdef0123456789abcdef",
   'the fresh temporary file stays');
ok(!-e $stale, 'the stale upload is gone');
ok(!-e $dangling && -e $pushing,
   'the old dangling referrer is gone, the fresh one stays');
ok(!-l "$v2/blobs/sha256/$prefix"
   && !-l "$v2/repositories/good/app/_layers/sha256/evil",
   'the symbolic links are gone');
ok(-d '/etc' && -d "$v2/repositories/good",
   'their targets are not');
ok(!-e $victim, 'the corrupt blob left blobs/');
ok(-f "$v2/_ngx_quarantine/sha256/" . hex_of($corrupt->{layers}[0]),
   'the corrupt blob is in quarantine');
ok(-e "$v2/_ngx_tombstones/sha256/ab/tomb", 'the tombstone is left alone');

# every good image is still served

for my $img ([ 'good/app', 'v1', $good ], [ 'lib/other', '1', $other ]) {
    my ($name, $tag, $i) = @$img;

    $r = $t->req('GET', "/v2/$name/manifests/$tag",
                 headers => { Accept => $OCI_M });
    is($r->{status}, 200, "$name:$tag still served");
    is($r->{content}, $i->{manifest}, "$name:$tag: its manifest");

    for my $d ($i->{config}, @{ $i->{layers} }) {
        $r = $t->req('GET', "/v2/$name/blobs/$d");
        is(RegTest::digest($r->{content}), $d, "$name: blob $d served");
    }
}
is($t->req('GET', '/v2/big/blob/blobs/' . RegTest::digest($big))->{status},
   200, 'the big blob still served');

# the corrupt layer is no longer served with a wrong digest

is($t->req('GET', "/v2/corrupt/img/blobs/$corrupt->{layers}[0]")->{status},
   404, 'the corrupt layer: 404, not wrong bytes');

# what is left: what repair cannot prove to be garbage

($report) = fsck(rehash => 1);

is_deeply(counts($report), {
    link_to_missing_blob => 1,
    manifest_to_missing_blob => 3,
    index_to_missing_manifest => 1,
}, 'after repair: only the link to the quarantined blob and the manifests '
   . 'naming missing blobs')
    or diag(explain($report->{problems}));

# the report lists the first 1000 problems, and counts them all

make_path("$v2/many");
for my $i (1 .. 1005) {
    symlink('/etc', "$v2/many/link$i") or die "symlink: $!";
}

($report) = fsck(repair => 1);

is($report->{symlink}, 1005, 'many links: all counted');
is(scalar @{ $report->{problems} }, 1000, 'many links: 1000 listed');
my $sum = 0;
$sum += $report->{$_} for @KINDS;
is($report->{problems_total}, $sum, 'many links: the total counts all');
is($report->{problems_total} - $report->{symlink}, 5,
   'many links: beside the 5 problems repair left');
opendir(my $dh, "$v2/many") or die;
is(scalar(grep { !/^\./ } readdir $dh), 0, 'many links: all removed');
closedir $dh;

$t->stop;
done_testing();

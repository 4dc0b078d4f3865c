#!/usr/bin/perl

# Listings at scale: a store of 100,000 repositories, a repository of
# 100,000 tags and a subject with 1,000 referrers, written straight to
# disk before nginx starts (distribution's layout, as bench/lib/Bench/
# Store.pm writes it).
#
#   - the catalog walked in pages of 1,000 through the Link headers gives
#     every repository once, sorted; last in the middle, the final page;
#   - tags/list: the whole list in one answer, pages, last;
#   - referrers: 1,000 entries, 500 with each artifactType filter;
#   - the first catalog request after startup waits for the walk of
#     repositories/, the first tags/list for the read of 100,000 tag
#     directories, the first referrers request for the rebuild of the
#     index from 1,001 manifests; all of it runs in a pool thread, so the
#     one worker answers other requests meanwhile: they are answered
#     before the waiting request is (ordering, not milliseconds: latency
#     is bench/'s business);
#   - freshness: a repository pushed through nginx is in the very next
#     catalog answer, one made by hand appears once the index is walked
#     again (registry_catalog_refresh), a tag made by hand at once.
#
# The store is 1.2 million files and directories: on a tmpfs of its own
# (root), writing it takes seconds and removing it is one umount; without
# root it goes to TMPDIR, which can be much slower.

use strict;
use warnings;

use Test::More;
use Digest::SHA qw(sha256_hex);
use File::Temp qw(tempdir);
use IO::Select;
use IO::Socket::INET;
use JSON::PP;
use POSIX qw(ceil);
use Time::HiRes qw(time sleep);

use lib 't/lib';
use RegTest;

my $API = 'registry/2.0';
my $OCI_M = 'application/vnd.oci.image.manifest.v1+json';
my $OCI_I = 'application/vnd.oci.image.index.v1+json';
my $OCI_CONFIG = 'application/vnd.oci.image.config.v1+json';
my $OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';
my $EMPTY = 'application/vnd.oci.empty.v1+json';
my $SBOM = 'application/vnd.example.sbom+json';
my $SIG = 'application/vnd.example.sig';

my $REPOS = 100_000;
my $TAGS = 100_000;
my $REFERRERS = 1_000;

my $TAGS_REPO = 'big/tags';
my $REF_REPO = 'big/referrers';

my $json = JSON::PP->new->utf8->canonical;

sub dec { my ($text) = @_; return eval { $json->decode($text) }; }

###############################################################################
# where the store goes

my $T0 = time;
my $mnt = tempdir('regtest-scale-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);
my $mounted = $> == 0
    && system('mount', '-t', 'tmpfs', '-o', 'size=512m,nr_inodes=2m',
              'tmpfs', $mnt) == 0;

diag("no tmpfs for the store (not root?): writing 1.2 million files to "
     . "$mnt, which can take minutes") unless $mounted;

my @servers;

END {
    local $?;   # the file's exit status, which system() would overwrite

    # nginx first (its workers hold the store open), then the store
    $_->stop for grep { defined } @servers;
    if ($mnt && -d $mnt) {
        if ($mounted) {
            system('umount', $mnt);
        } else {
            system('rm', '-rf', "$mnt/store", "$mnt/links");
        }
    }
}

my $root = "$mnt/store";
my $v2 = "$root/docker/registry/v2";

###############################################################################
# the store, written straight to disk

# mkdir -p
sub mkdirs {
    my ($dir) = @_;
    my $path = '';
    for my $part (grep { length } split m{/}, $dir) {
        $path .= "/$part";
        mkdir $path or $!{EEXIST} or die "mkdir $path: $!\n";
    }
}

sub put_file {
    my ($path, $bytes) = @_;
    (my $dir = $path) =~ s{/[^/]+$}{};
    mkdirs($dir);
    RegTest::spew($path, $bytes);
}

sub blob {
    my ($bytes) = @_;
    my $hex = sha256_hex($bytes);
    put_file("$v2/blobs/sha256/" . substr($hex, 0, 2) . "/$hex/data", $bytes);
    return $hex;
}

# A link file holds "sha256:<hex>" without a newline.  The hundreds of
# thousands that name the same digest are hard links of one file written
# once (same bytes, same names, what any reader sees; the servers replace
# links by rename(2), never in place): one link(2) instead of open, write
# and close, which is most of the time the store takes to write.
my %templates;

sub link_file {
    my ($path, $hex) = @_;
    my $tmpl = "$mnt/links/$hex";
    unless ($templates{$hex}++) {
        mkdirs("$mnt/links");
        RegTest::spew($tmpl, "sha256:$hex");
    }
    link($tmpl, $path) or die "link $path: $!\n";
}

sub layer_link {
    my ($repo, $hex) = @_;
    my $dir = "$v2/repositories/$repo/_layers/sha256/$hex";
    mkdirs($dir);
    link_file("$dir/link", $hex);
}

sub revision_link {
    my ($repo, $hex) = @_;
    my $dir = "$v2/repositories/$repo/_manifests/revisions/sha256/$hex";
    mkdirs($dir);
    link_file("$dir/link", $hex);
}

# current/link and the tag's index entry, as distribution writes a tag
sub tag_links {
    my ($tags_dir, $tag, $hex) = @_;
    my $d = "$tags_dir/$tag";
    mkdir $d or die "mkdir $d: $!\n";
    mkdir "$d/current" or die "mkdir $d/current: $!\n";
    mkdir "$d/index" or die "mkdir $d/index: $!\n";
    mkdir "$d/index/sha256" or die "mkdir $d/index/sha256: $!\n";
    mkdir "$d/index/sha256/$hex" or die "mkdir $d/index/sha256/$hex: $!\n";
    link_file("$d/current/link", $hex);
    link_file("$d/index/sha256/$hex/link", $hex);
}

sub desc {
    my ($type, $hex, $size, %extra) = @_;
    return { mediaType => $type, digest => "sha256:$hex", size => $size,
             %extra };
}

# an image manifest over blobs that are stored and linked in $repo
sub image {
    my ($repo, $config_bytes, @layers) = @_;
    my $config = blob($config_bytes);
    layer_link($repo, $config);
    my @ld;
    for my $l (@layers) {
        my $hex = blob($l);
        layer_link($repo, $hex);
        push @ld, desc($OCI_LAYER, $hex, length $l);
    }
    my $bytes = $json->encode({
        schemaVersion => 2,
        mediaType => $OCI_M,
        config => desc($OCI_CONFIG, $config, length $config_bytes),
        layers => \@ld,
    });
    my $hex = blob($bytes);
    revision_link($repo, $hex);
    return { hex => $hex, bytes => $bytes };
}

my $layer = "one small layer shared by every repository\n";
my $layer_hex = blob($layer);
my $config = '{"architecture":"amd64","os":"linux","rootfs":'
           . '{"type":"layers","diff_ids":[]}}';

mkdirs("$v2/repositories/scale");
link_file("$mnt/links/layer", $layer_hex);  # its template made before fork

# 100,000 repositories scale/r000000 .. scale/r099999, each with one
# layer link: what makes a directory a repository (the walk reads each
# repository's directory and goes no deeper).  Written by a second
# process while this one writes the tags.

my @repo_names = map { sprintf 'scale/r%06d', $_ } 0 .. $REPOS - 1;

my $child = fork() // die "fork: $!\n";
if ($child == 0) {
    my $ok = eval {
        for my $name (@repo_names) {
            my $r = "$v2/repositories/$name";
            mkdir $r or die "mkdir $r: $!\n";
            mkdir "$r/_layers" or die "mkdir $r/_layers: $!\n";
            mkdir "$r/_layers/sha256" or die "mkdir: $!\n";
            mkdir "$r/_layers/sha256/$layer_hex" or die "mkdir: $!\n";
            link_file("$r/_layers/sha256/$layer_hex/link", $layer_hex);
        }
        1;
    };
    print STDERR $@ unless $ok;
    POSIX::_exit($ok ? 0 : 1);
}

# 100,000 tags v0 .. v99999 on one small image (byte order is not the
# numeric order: v0, v1, v10, v100, ...)

my $tag_img = image($TAGS_REPO, $config, $layer);
my @tag_names = map { "v$_" } 0 .. $TAGS - 1;
{
    my $dir = "$v2/repositories/$TAGS_REPO/_manifests/tags";
    mkdirs($dir);
    tag_links($dir, $_, $tag_img->{hex}) for @tag_names;

    # as if written a while ago: a tags directory changed less than 2 s
    # before it is read is read again at every listing; this one is
    # settled, so the first listing is kept by the worker and the others
    # are answered from what it kept
    my $past = time - 60;
    utime($past, $past, $dir) or die "utime $dir: $!\n";
}
my @tags_sorted = sort @tag_names;

# a subject image (tagged) and 1,000 referrers of it: OCI image manifests
# with subject, artifactType (two, alternating) and an annotation, stored
# as blobs with revision links and nothing else.  Without _ngx_referrers/
# the module builds the index from them on the first referrers request.

my $subject = image($REF_REPO, $config, $layer);
mkdirs("$v2/repositories/$REF_REPO/_manifests/tags");
tag_links("$v2/repositories/$REF_REPO/_manifests/tags", 'subject',
          $subject->{hex});

my @referrers;      # the entries the listing must hold
{
    my $empty = blob('{}');
    my $sbom = '{"spdxVersion":"SPDX-2.3","name":"scale"}';
    my $sbom_hex = blob($sbom);
    layer_link($REF_REPO, $_) for $empty, $sbom_hex;

    for my $i (1 .. $REFERRERS) {
        my $type = $i % 2 ? $SBOM : $SIG;
        my $ann = { 'org.example.n' => "$i" };
        my $bytes = $json->encode({
            schemaVersion => 2,
            mediaType => $OCI_M,
            artifactType => $type,
            config => desc($EMPTY, $empty, 2),
            layers => [ desc('application/spdx+json', $sbom_hex,
                             length $sbom) ],
            subject => desc($OCI_M, $subject->{hex},
                            length $subject->{bytes}),
            annotations => $ann,
        });
        my $hex = blob($bytes);
        revision_link($REF_REPO, $hex);
        push @referrers, desc($OCI_M, $hex, length $bytes,
                              artifactType => $type, annotations => $ann);
    }
}

waitpid($child, 0);
is($?, 0, 'the 100,000 repositories written') or BAIL_OUT('no store');

my @catalog = sort(@repo_names, $TAGS_REPO, $REF_REPO);
my $GEN = time - $T0;
note(sprintf 'store written in %.1f s (%s)', $GEN,
     $mounted ? 'tmpfs' : 'TMPDIR');

###############################################################################
# helpers

# one request on a connection of its own, answer read later: HTTP/1.0, so
# the answer has no chunked encoding and ends with the connection
sub send_request {
    my ($t, $path) = @_;
    my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                  PeerPort => $t->port, Proto => 'tcp')
        or die "connect: $!\n";
    $s->autoflush(1);
    print $s "GET $path HTTP/1.0\r\nHost: localhost\r\n\r\n";
    return $s;
}

# whether the first bytes of the answer have arrived (does not wait)
sub has_answered {
    my ($s) = @_;
    return IO::Select->new($s)->can_read(0) ? 1 : 0;
}

sub read_answer {
    my ($s) = @_;
    my $raw = '';
    eval {
        local $SIG{ALRM} = sub { die "timeout\n" };
        alarm(60);
        while (1) {
            my $n = sysread($s, my $buf, 1 << 20);
            last unless $n;
            $raw .= $buf;
        }
        alarm(0);
    };
    alarm(0);
    close $s;

    my ($head, $body) = split /\r\n\r\n/, $raw, 2;
    my ($line, @lines) = split /\r\n/, $head // '';
    my %res = (status => 0, headers => {}, content => $body // '');
    ($res{status}) = ($line // '') =~ m{^HTTP/\S+ (\d+)};
    $res{status} //= 0;
    for (@lines) {
        my ($k, $v) = /^([^:]+):\s*(.*)$/ or next;
        $res{headers}{lc $k} = $v;
    }
    return \%res;
}

# Sends $path, waits until the worker has started on it ($started->(),
# which returns once it has), then sends the requests of @meanwhile one
# after the other, each on a new connection; for each, once it is
# answered, whether the first request's answer had come yet.  In a worker
# that did the slow part in its event loop, the first request would be
# answered before any later one.  Returns the first answer.
sub answered_meanwhile {
    my ($t, $what, $path, $started, @meanwhile) = @_;

    my $t0 = time;
    my $s = send_request($t, $path);

    $started->();

    my @order;
    for my $p (@meanwhile) {
        my $r = $t->req('GET', $p);
        push @order, "$r->{status} " . (has_answered($s) ? 'after' : 'before');
    }
    my $t1 = time;

    is(join(', ', @order), join(', ', ('200 before') x @meanwhile),
       "$what: requests sent while it waits are answered before it");

    my $res = read_answer($s);
    is($res->{status}, 200, "$what: then answered");

    # for whoever reads the log (nothing asserted on durations)
    note(sprintf '%s: answered after %.3f s; the other %d by %.3f s',
         $what, time - $t0, scalar @meanwhile, $t1 - $t0);

    return $res;
}

sub list {
    my ($t, $path) = @_;
    my $r = $t->req('GET', $path);
    return ($r, dec($r->{content}) || {});
}

sub next_link {
    my ($r) = @_;
    my ($path) = ($r->{headers}{link} // '') =~ /^<([^>]+)>; rel="next"$/;
    return $path;
}

###############################################################################
# one worker, listings served from the pool threads (set here, so that
# REGTEST_THREADS=off leaves it alone)

my $t = RegTest->new(root => $root, workers => 1,
                     location_extra => 'registry_thread_pool default;');
push @servers, $t;

# The worker reads a request within a millisecond, so 20 ms after it was
# sent the slow part is under way.  (Were the worker much slower to read
# it, the first requests below could be answered before it even began:
# that would weaken the check, never make it fail wrongly.)
my $read_soon = sub { sleep 0.02 };

my @meanwhile = ('/v2/', "/v2/scale/r000000/blobs/sha256:$layer_hex",
                 '/v2/', "/v2/$TAGS_REPO/manifests/sha256:$tag_img->{hex}",
                 '/v2/');

# the first catalog request after startup waits for the walk of
# 100,000 repositories

{
    my $res = answered_meanwhile($t, 'first catalog request', '/v2/_catalog',
                                 $read_soon, @meanwhile);
    is($res->{headers}{'docker-distribution-api-version'}, $API,
       'first catalog request: api version');
    my $j = dec($res->{content}) || {};
    is(scalar @{ $j->{repositories} || [] }, scalar @catalog,
       'first catalog request: 100,002 repositories');
    is_deeply($j->{repositories}, \@catalog,
              'first catalog request: all of them, sorted');
    ok(!exists $res->{headers}{link}, 'first catalog request: no Link');
}

# the catalog in pages of 1,000, through the Link headers

{
    my (@all, @sizes, $bad_links);
    my $path = '/v2/_catalog?n=1000';
    my $pages = 0;
    my $last_r;
    $bad_links = 0;
    while ($path && $pages++ < 200) {
        my ($r, $j) = list($t, $path);
        my @names = @{ $j->{repositories} || [] };
        push @all, @names;
        push @sizes, scalar @names;
        $path = next_link($r);
        # each Link names the page's last repository
        $bad_links++ if $path && @names
            && $path ne "/v2/_catalog?last=$names[-1]&n=1000"
            && $path ne '/v2/_catalog?last='
                        . join('%2F', split m{/}, $names[-1]) . '&n=1000';
        $last_r = $r;
    }
    my $want_pages = ceil(@catalog / 1000);
    is($pages, $want_pages, "catalog: $want_pages pages of 1,000");
    is(scalar(grep { $_ != 1000 } @sizes[0 .. $#sizes - 1]), 0,
       'catalog: every page but the last holds 1,000');
    is($sizes[-1], @catalog % 1000 || 1000, 'catalog: the last page holds the rest');
    is($bad_links, 0, 'catalog: each Link names the last repository of its page');
    is(scalar @all, scalar @catalog, 'catalog: 100,002 entries in all');
    my %seen;
    is(scalar(grep { $seen{$_}++ } @all), 0, 'catalog pages: no repository twice');
    is_deeply(\@all, \@catalog, 'catalog pages: every repository, sorted');
    ok($last_r && !exists $last_r->{headers}{link}, 'catalog: the last page has no Link');
}

# last in the middle

{
    my ($r, $j) = list($t, '/v2/_catalog?last=scale/r049999&n=3');
    is($r->{status}, 200, 'catalog last in the middle: status');
    is_deeply($j->{repositories},
              ['scale/r050000', 'scale/r050001', 'scale/r050002'],
              'catalog last in the middle: the next three');
    like($r->{headers}{link} // '',
         qr{^</v2/_catalog\?last=scale(/|%2F)r050002&n=3>; rel="next"$},
         'catalog last in the middle: Link');

    ($r, $j) = list($t, '/v2/_catalog?last=scale%2Fr049999x&n=2');
    is_deeply($j->{repositories}, ['scale/r050000', 'scale/r050001'],
              'catalog last between two names');

    ($r, $j) = list($t, "/v2/_catalog?last=$catalog[-3]&n=2");
    is_deeply($j->{repositories}, [ @catalog[-2, -1] ],
              'catalog final page: the last two');
    ok(!exists $r->{headers}{link}, 'catalog final page: no Link');

    ($r, $j) = list($t, "/v2/_catalog?last=$catalog[-1]&n=1000");
    is($r->{status}, 200, 'catalog after the last repository: status');
    is_deeply($j->{repositories} || [], [], 'catalog after the last repository: empty');
}

# tags: the first listing of 100,000 tags waits for the read of the
# directory, in a thread

{
    my $res = answered_meanwhile($t, "first tags/list of $TAGS_REPO",
                                 "/v2/$TAGS_REPO/tags/list", $read_soon,
                                 @meanwhile);
    my $j = dec($res->{content}) || {};
    is($j->{name}, $TAGS_REPO, 'whole tag list: name');
    is(scalar @{ $j->{tags} || [] }, $TAGS, 'whole tag list: 100,000 tags');
    is_deeply($j->{tags}, \@tags_sorted, 'whole tag list: sorted byte-wise');
    ok(!exists $res->{headers}{link}, 'whole tag list: no Link');

    # the same request again: from the worker's list this time
    my ($r, $again) = list($t, "/v2/$TAGS_REPO/tags/list");
    is($r->{status}, 200, 'whole tag list again: status');
    is_deeply($again->{tags}, \@tags_sorted,
              'whole tag list again (kept by the worker): the same 100,000')
        or diag('got ' . length($r->{content}) . ' bytes, JSON '
                . ($again->{tags} ? 'with ' . scalar(@{ $again->{tags} })
                                    . ' tags' : 'that does not decode')
                . ': ' . substr($r->{content}, 0, 120));
}

{
    my @all;
    my $path = "/v2/$TAGS_REPO/tags/list?n=1000";
    for my $page (1 .. 3) {
        my ($r, $j) = list($t, $path);
        my @want = @tags_sorted[($page - 1) * 1000 .. $page * 1000 - 1];
        is_deeply($j->{tags}, \@want, "tags page $page: 1,000 tags in order");
        is($r->{headers}{link},
           "</v2/$TAGS_REPO/tags/list?last=$want[-1]&n=1000>; rel=\"next\"",
           "tags page $page: Link after its last tag");
        $path = next_link($r);
    }

    my ($r, $j) = list($t, "/v2/$TAGS_REPO/tags/list?last=v50000&n=4");
    my ($at) = grep { $tags_sorted[$_] eq 'v50000' } 0 .. $#tags_sorted;
    is_deeply($j->{tags}, [ @tags_sorted[$at + 1 .. $at + 4] ],
              'tags last in the middle');
    is($r->{headers}{link},
       "</v2/$TAGS_REPO/tags/list?last=$tags_sorted[$at + 4]&n=4>; rel=\"next\"",
       'tags last in the middle: Link');

    ($r, $j) = list($t, "/v2/$TAGS_REPO/tags/list?last=$tags_sorted[-2]&n=1000");
    is_deeply($j->{tags}, [ $tags_sorted[-1] ], 'tags final page: the last tag')
        or diag("$r->{status} $tags_sorted[-2] " . substr($r->{content}, 0, 300));
    ok(!exists $r->{headers}{link}, 'tags final page: no Link');
}

# referrers: the first request rebuilds the index from the repository's
# 1,001 manifests, in a thread

{
    # the rebuild logs its start: the other requests are sent once it has
    # begun
    my $rebuilding = qr/rebuilding the referrers index of "\Q$REF_REPO\E"/;
    my $res = answered_meanwhile($t, 'first referrers request',
                                 "/v2/$REF_REPO/referrers/sha256:$subject->{hex}",
                                 sub {
                                     my $until = time + 30;
                                     sleep 0.005 while time < $until
                                         && $t->error_log !~ $rebuilding;
                                 },
                                 @meanwhile);
    like($t->error_log, $rebuilding,
         'first referrers request: the index was rebuilt');
    is($res->{headers}{'content-type'}, $OCI_I, 'referrers: Content-Type');
    my $j = dec($res->{content}) || {};
    is(scalar @{ $j->{manifests} || [] }, $REFERRERS, 'referrers: 1,000 entries');
    is_deeply($j, {
        schemaVersion => 2,
        mediaType => $OCI_I,
        manifests => [ sort { $a->{digest} cmp $b->{digest} } @referrers ],
    }, 'referrers: every one, with its descriptor, by digest');
    ok(!exists $res->{headers}{'oci-filters-applied'},
       'referrers: no OCI-Filters-Applied without a filter');
}

for my $f ([$SBOM, 'application%2Fvnd.example.sbom%2Bjson'], [$SIG, $SIG]) {
    my ($type, $query) = @$f;
    my ($r, $j) = list($t, "/v2/$REF_REPO/referrers/sha256:$subject->{hex}"
                           . "?artifactType=$query");
    is($r->{status}, 200, "referrers of $type: status");
    is(scalar @{ $j->{manifests} || [] }, $REFERRERS / 2,
       "referrers of $type: 500 entries");
    is_deeply($j->{manifests},
              [ sort { $a->{digest} cmp $b->{digest} }
                grep { $_->{artifactType} eq $type } @referrers ],
              "referrers of $type: those of that type");
    is($r->{headers}{'oci-filters-applied'}, 'artifactType',
       "referrers of $type: OCI-Filters-Applied");
}

###############################################################################
# freshness

# a repository pushed through nginx: in the very next answer, though the
# index was walked seconds ago

$t->push_blob('fresh/pushed', 'a blob of a new repository');
{
    my ($r, $j) = list($t, "/v2/_catalog?last=$TAGS_REPO&n=2");
    is_deeply($j->{repositories}, ['fresh/pushed', 'scale/r000000'],
              'pushed repository: in the next catalog answer');
    ($r, $j) = list($t, '/v2/_catalog');
    is(scalar @{ $j->{repositories} || [] }, @catalog + 1,
       'pushed repository: counted once in the whole list');
}

# one made by hand: the index (registry_catalog_refresh 60s by default)
# is served as it is, without a walk per request

layer_link('hand/made', $layer_hex);
{
    my ($r, $j) = list($t, '/v2/_catalog?last=fresh/pushed&n=2');
    is_deeply($j->{repositories}, ['scale/r000000', 'scale/r000001'],
              'a repository made by hand: not listed before the next walk '
              . '(answers come from the index)');
}

# a tag made by hand: the tags directory's mtime changed, so the next
# listing reads it again (within 3 s)

{
    tag_links("$v2/repositories/$TAGS_REPO/_manifests/tags", 'zz-by-hand',
              $tag_img->{hex});
    my ($found, $tries) = (0, 0);
    my $until = time + 3;
    while (!$found && time < $until) {
        $tries++;
        my ($r, $j) = list($t, "/v2/$TAGS_REPO/tags/list?last=v99999");
        $found = grep { $_ eq 'zz-by-hand' } @{ $j->{tags} || [] };
        sleep 0.1 unless $found;
    }
    ok($found, 'a tag made by hand is listed within 3 s');
    note("tag made by hand listed after $tries listing(s)");
}

# a second nginx on the store, walking its index again after 1 s: a
# repository made by hand after its first walk appears within a few
# seconds (the next request after 1 s starts a walk of the 100,000
# repositories, one after 2 s waits for it)

{
    my $c = eval {
        RegTest->new(root => $root, workers => 1,
                     location_extra => "registry_thread_pool default;\n"
                                       . "registry_catalog_refresh 1s;");
    };
    ok($c, 'nginx with registry_catalog_refresh 1s starts') or diag($@);

    SKIP: {
        skip 'no second nginx', 3 unless $c;
        push @servers, $c;

        my ($r, $j) = list($c, '/v2/_catalog?last=fresh/pushed&n=1');
        is_deeply($j->{repositories}, ['hand/made'],
                  'refresh 1s: its first walk finds the repository made by hand');

        layer_link('hand/later', $layer_hex);
        my ($found, $tries) = (0, 0);
        my $t1 = time;
        my $until = $t1 + 10;
        while (!$found && time < $until) {
            $tries++;
            ($r, $j) = list($c, '/v2/_catalog?last=fresh/pushed&n=2');
            $found = grep { $_ eq 'hand/later' } @{ $j->{repositories} || [] };
            sleep 0.1 unless $found;
        }
        ok($found, 'refresh 1s: a repository made by hand later is listed '
                   . 'once the index is walked again');
        note(sprintf 'listed after %.1f s, %d catalog requests',
             time - $t1, $tries);

        $c->stop;
    }
}

# nothing went wrong quietly either

{
    my @errors = grep { /\[error\]/ } split /\n/, $t->error_log;
    is(join("\n", @errors), '', 'no [error] lines in error.log');
}

$t->stop;

note(sprintf 'whole file: %.1f s (store written in %.1f s)', time - $T0, $GEN);

done_testing();

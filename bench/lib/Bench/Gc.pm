package Bench::Gc;

# The store of the garbage collection lines: 100,000 blobs and 10,000
# manifests, with a known part of them garbage, written straight into a
# store by Bench::Store (the files a push would leave), and what either
# collector must leave of it.
#
#   my $m = Bench::Gc::model();          # every blob, manifest and link
#   Bench::Gc::write_store($m, $root);   # three processes
#   my $have = Bench::Gc::blobs($root);  # { hex => 1 } of blobs/.../data
#   my $d = Bench::Gc::compare($have, $m->{keep}{untagged});
#
# The store (2,000 repositories gc/r0000 .. gc/r1999):
#
#   - each repository: 5 OCI image manifests, m0 .. m4.  m0 .. m3 are
#     tagged v0 .. v3 (and m3 also latest); m4 is untagged, an old
#     revision of v3 (the tag's index still names it, its current link
#     names m3), as a tag moved by a later push leaves it.
#   - each manifest: its own config and 9 layers: 3 from a pool of 2,000
#     base layers shared by all repositories, 6 of the repository's own
#     24 layers (m0 .. m3 overlap: m_i has own layers 4i .. 4i+5; m4 has
#     18 .. 23, its alone).  Tagged manifests draw their base layers from
#     the first 1,800 of the pool, m4 from all 2,000: some base layers are
#     only named by untagged manifests.
#   - each repository: 15 unreferenced layer blobs ("orphans": no manifest
#     names them), 5 of them with a _layers link in the repository (as an
#     abandoned push leaves them), 10 without.
#
#   blobs: 10,000 manifests + 10,000 configs + 48,000 own layers + 2,000
#   base layers + 30,000 orphans = 100,000.
#
# Every file written (blob data, links) gets an mtime a week old (utime),
# so that no grace period keeps it: the module's gc keeps a blob whose
# layer link is young (a push in flight) and, with delete_untagged, a
# young untagged revision.  Contents are a few bytes, named by their
# SHA-256; manifests are valid OCI image manifests (distribution parses
# them on its mark).  No index, no referrer: distribution 2.8.2 knows no
# referrers, and with --delete-untagged it deletes the untagged children
# of a live index, which the module keeps; on this store both collectors
# must leave exactly the same blobs.
#
# What must be left, computed from the model rather than written down:
#   keep{all}       blobs of every manifest revision (gc without
#                   delete_untagged; distribution without
#                   --delete-untagged): the orphans go
#   keep{untagged}  blobs of tagged manifests only (delete_untagged;
#                   distribution --delete-untagged): the untagged m4s go
#                   too, with their configs and the layers no tagged
#                   manifest names

use strict;
use warnings;

use Digest::SHA qw(sha256_hex);
use POSIX ();

use Bench::Store;
use Bench::Util qw(spawn_code reap);

our $REPOS = 2_000;
our $MANIFESTS = 5;           # per repository, the last untagged
our $BASE = 2_000;            # shared base layers
our $BASE_TAGGED = 1_800;     # those tagged manifests draw from
our $OWN = 24;                # a repository's own layers
our $ORPHANS = 15;            # unreferenced blobs per repository
our $ORPHAN_LINKS = 5;        # of which linked in _layers

my $AGE = 7 * 86400;          # the blobs' mtime: a week ago

sub repo_name { sprintf 'gc/r%04d', $_[0] }

sub _blob {
    my ($bytes) = @_;
    return { hex => sha256_hex($bytes), bytes => $bytes };
}

# 3 distinct base layers of manifest ($r, $m), spread over the pool
sub _base_of {
    my ($r, $m) = @_;

    my $n = $m < $MANIFESTS - 1 ? $BASE_TAGGED : $BASE;
    my $h = unpack('N', Digest::SHA::sha256("base $r $m")) % $n;

    return map { ($h + $_ * 613) % $n } 0 .. 2;
}

sub _own_of {
    my ($m) = @_;
    my $first = $m < $MANIFESTS - 1 ? 4 * $m : $OWN - 6;
    return $first .. $first + 5;
}

sub _manifest {
    my ($config, @layers) = @_;

    my $bytes = Bench::Store::image_manifest(
        config => [ $config->{hex}, length $config->{bytes} ],
        layers => [ map { [ $_->{hex}, length $_->{bytes} ] } @layers ]);

    return { %{ _blob($bytes) }, config => $config, layers => \@layers };
}

sub _config {
    my ($r, $m) = @_;
    return _blob('{"architecture":"amd64","os":"linux","rootfs":'
                 . '{"type":"layers","diff_ids":[]},"config":{"Labels":'
                 . "{\"gc\":\"$r-$m\"}}}");
}

sub _repo {
    my ($r, $base) = @_;

    my @own = map { _blob("gc layer $r $_\n") } 0 .. $OWN - 1;
    my @manifests;

    for my $m (0 .. $MANIFESTS - 1) {
        my $man = _manifest(_config($r, $m),
                            (map { $base->[$_] } _base_of($r, $m)),
                            (map { $own[$_] } _own_of($m)));
        my $last = $m == $MANIFESTS - 1;

        $man->{tags} = $last ? [] : [ "v$m", $m == $MANIFESTS - 2
                                             ? ('latest') : () ];
        $man->{history} = $last ? [ 'v' . ($m - 1) ] : [];
        push @manifests, $man;
    }

    my @orphans = map { _blob("gc orphan $r $_\n") } 0 .. $ORPHANS - 1;

    return { name => repo_name($r), manifests => \@manifests,
             orphans => \@orphans,
             linked_orphans => [ @orphans[0 .. $ORPHAN_LINKS - 1] ] };
}

# the whole store as data, and what each collector must keep
sub model {
    my @base = map { _blob("gc base layer $_\n") } 0 .. $BASE - 1;
    my @repos = map { _repo($_, \@base) } 0 .. $REPOS - 1;
    my (%all, %keep_all, %keep_tagged);

    $all{$_->{hex}} = 1 for @base;

    for my $repo (@repos) {
        $all{$_->{hex}} = 1 for @{ $repo->{orphans} };

        for my $man (@{ $repo->{manifests} }) {
            my @hex = map { $_->{hex} } $man, $man->{config},
                                        @{ $man->{layers} };
            $all{$_} = $keep_all{$_} = 1 for @hex;
            next unless @{ $man->{tags} };
            $keep_tagged{$_} = 1 for @hex;
        }
    }

    my $manifests = 0;
    $manifests += @{ $_->{manifests} } for @repos;

    return { base => \@base, repos => \@repos, all => \%all,
             manifests => $manifests,
             keep => { all => \%keep_all, untagged => \%keep_tagged } };
}

sub _put_blob {
    my ($st, $blob) = @_;
    $st->blob($blob->{bytes});
}

sub _write_repo {
    my ($st, $repo) = @_;

    my $name = $repo->{name};
    my %linked;
    my $link = sub {
        my ($blob) = @_;
        $st->layer($name, $blob->{hex}) unless $linked{$blob->{hex}}++;
    };

    for my $man (@{ $repo->{manifests} }) {
        for my $blob ($man->{config}, @{ $man->{layers} }) {
            _put_blob($st, $blob);
            $link->($blob);
        }
        _put_blob($st, $man);
        $st->revision($name, $man->{hex});
        $st->tag($name, $_, $man->{hex}) for @{ $man->{tags} };
        $st->tag_history($name, $_, $man->{hex}) for @{ $man->{history} };
    }

    _put_blob($st, $_) for @{ $repo->{orphans} };
    $link->($_) for @{ $repo->{linked_orphans} };
}

# writes the model into the store at $root: the shared base layers first,
# then the repositories in $procs processes
sub write_store {
    my ($m, $root, %o) = @_;

    my $procs = $o{procs} || 3;
    my $st = Bench::Store->new($root);
    my @repos = @{ $m->{repos} };

    $st->mtime(time - $AGE);
    _put_blob($st, $_) for @{ $m->{base} };

    my @jobs;
    for my $p (0 .. $procs - 1) {
        my @mine = @repos[ grep { $_ % $procs == $p } 0 .. $#repos ];
        push @jobs, spawn_code(sub {
            _write_repo($st, $_) for @mine;
            return 1;
        });
    }

    my @failed = grep { reap($_, 1800) != 0 } @jobs;
    die "writing the gc store failed\n" if @failed;
}

# { hex => 1 } of every blobs/sha256/<2>/<hex>/data under $root
sub blobs {
    my ($root) = @_;

    my $dir = "$root/docker/registry/v2/blobs/sha256";
    my %have;

    opendir(my $top, $dir) or return \%have;
    for my $two (grep { !/^\./ } readdir $top) {
        opendir(my $dh, "$dir/$two") or next;
        -f "$dir/$two/$_/data" and $have{$_} = 1
            for grep { !/^\./ } readdir $dh;
        closedir $dh;
    }
    closedir $top;

    return \%have;
}

# how a store's blobs differ from what should be left:
# { left, missing => [live blobs gone], extra => [garbage still there] }
sub compare {
    my ($have, $keep) = @_;

    return {
        left => scalar(keys %$have),
        missing => [ grep { !$have->{$_} } sort keys %$keep ],
        extra => [ grep { !$keep->{$_} } sort keys %$have ],
    };
}

# every file under $dir (the tombstones a collector left), 0 if none
sub count_files {
    my ($dir) = @_;

    return 0 unless -d $dir;
    my $n = 0;
    my @todo = ($dir);

    while (defined(my $d = shift @todo)) {
        opendir(my $dh, $d) or next;
        for (grep { !/^\.\.?$/ } readdir $dh) {
            my $p = "$d/$_";
            if (-l $p || !-d _) { $n++ } else { push @todo, $p }
        }
        closedir $dh;
    }

    return $n;
}

1;

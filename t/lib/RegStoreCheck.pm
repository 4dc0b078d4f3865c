package RegStoreCheck;

# The store's consistency after concurrent writers or crashes, for
# t/many_writers.t, t/crash_loop.t and others:
#
#   use RegStoreCheck;
#   my @p = RegStoreCheck::problems($t->root);     # strings, () when clean
#   RegStoreCheck::check($t, admin => '/admin/');  # two assertions
#
# problems($root) walks <root>/docker/registry/v2 itself and reports:
#   - a blob (blobs/<alg>/<xx>/<hex>/data) whose bytes do not hash to its
#     name, or that sits under the wrong <xx>;
#   - a link (_layers, _manifests/revisions, tags' current and index)
#     that is not exactly "<alg>:<hex>" of its own path (tags: of any
#     digest), a layer or revision link or a tag's current link whose blob
#     is missing (a layer's blob may be the gc's tombstone), a tag whose current link names no revision of its
#     repository;
#   - any file that is none of the store's kinds (a blob, a link, an
#     upload session's files, the referrers index, the repositories' lock
#     files, the module's own _ngx_* directories): a temporary file left
#     outside _ngx_tmp, a half-renamed name.
# Tag history links (index/) may name manifests deleted since, as in
# distribution: only their form is checked.
# check($t, admin => PREFIX) is one assertion on problems(), and with an
# admin location (registry_admin on) a second one: fsck (POST
# PREFIX.fsck) reports problems_total 0.

use strict;
use warnings;

use Digest::SHA;
use File::Find ();
use JSON::PP;
use Test::More ();
use Time::HiRes qw(sleep);

my $HEX = qr/(?:[0-9a-f]{64}|[0-9a-f]{128})/;
my $ALG = qr/sha256|sha512/;
my $UUID = qr/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

sub slurp {
    my ($file) = @_;
    open(my $fh, '<', $file) or return undef;
    binmode $fh;
    local $/;
    my $data = <$fh>;
    return $data // '';
}

sub hash_file {
    my ($alg, $file) = @_;
    my $sha = Digest::SHA->new($alg eq 'sha512' ? 512 : 256);
    open(my $fh, '<', $file) or return '';
    binmode $fh;
    $sha->addfile($fh);
    return $sha->hexdigest;
}

# what a link file names: "<alg>:<hex>" or undef
sub link_of {
    my ($file) = @_;
    my $text = slurp($file);
    return undef unless defined $text && $text =~ /\A($ALG):($HEX)\z/;
    return ($1, $2);
}

sub problems {
    my ($root) = @_;

    my $v2 = "$root/docker/registry/v2";
    my (@p, @links, %revisions, @tags);

    return () unless -d $v2;

    File::Find::find({ no_chdir => 1, wanted => sub {
        my $f = $File::Find::name;
        return if -d $f && !-l $f;

        (my $rel = $f) =~ s{^\Q$v2\E/}{};

        if (-l $f) {
            push @p, "symbolic link: $rel";

        } elsif ($rel =~ m{^blobs/($ALG)/([0-9a-f]{2})/($HEX)/data$}) {
            my ($alg, $xx, $hex) = ($1, $2, $3);
            push @p, "blob under the wrong prefix: $rel"
                if substr($hex, 0, 2) ne $xx;
            my $got = hash_file($alg, $f);
            push @p, "blob does not hash to its name: $rel (is $got)"
                if $got ne $hex;

        } elsif ($rel =~ m{^repositories/(.+)/_layers/($ALG)/($HEX)/link$}) {
            push @links, [$rel, $f, $2, $3, 'layer'];

        } elsif ($rel =~ m{^repositories/(.+)/_manifests/revisions/($ALG)/
                           ($HEX)/link$}x)
        {
            push @links, [$rel, $f, $2, $3, 'revision'];
            $revisions{"$1\@$2:$3"} = 1;

        } elsif ($rel =~ m{^repositories/(.+)/_manifests/tags/([^/]+)/
                           current/link$}x)
        {
            push @tags, [$rel, $f, $1];

        } elsif ($rel =~ m{^repositories/.+/_manifests/tags/[^/]+/index/
                           ($ALG)/($HEX)/link$}x)
        {
            my ($alg, $hex) = link_of($f);
            push @p, "tag history link not its own digest: $rel"
                unless defined $alg && $alg eq $1 && $hex eq $2;

        } elsif ($rel =~ m{^repositories/.+/_uploads/$UUID/
                           (?:data|startedat|ngx_registry_state|hashstates/.+)$}x
                 || $rel =~ m{^repositories/.+/_ngx_referrers/}
                 || $rel =~ m{^_ngx_locks/[0-9a-f]{64}$}
                 || $rel =~ m{^_ngx_(?:tmp|jobs|tombstones|quarantine|flights)/})
        {
            # an upload session, the referrers index, the module's own

        } else {
            push @p, "unexpected file: $rel";
        }
    } }, $v2);

    for my $l (@links) {
        my ($rel, $f, $alg, $hex, $kind) = @$l;
        my ($la, $lh) = link_of($f);

        if (!defined $la || $la ne $alg || $lh ne $hex) {
            push @p, "$kind link not its own digest: $rel";
        } elsif (!-f blob($v2, $alg, $hex)
                 && !($kind eq 'layer' && -f "$v2/_ngx_tombstones/$alg/$hex"))
        {
            # (a tombstone keeps its layer links: gc removes them first)
            push @p, "$kind link to a missing blob: $rel";
        }
    }

    for my $tag (@tags) {
        my ($rel, $f, $name) = @$tag;
        my ($alg, $hex) = link_of($f);

        if (!defined $alg) {
            push @p, 'tag link torn: ' . $rel . ' holds "'
                     . (slurp($f) // '(unreadable)') . '"';
        } elsif (!-f blob($v2, $alg, $hex)) {
            push @p, "tag link to a missing blob: $rel";
        } elsif (!$revisions{"$name\@$alg:$hex"}) {
            push @p, "tag names no revision of its repository: $rel";
        }
    }

    return @p;
}

sub blob {
    my ($v2, $alg, $hex) = @_;
    return "$v2/blobs/$alg/" . substr($hex, 0, 2) . "/$hex/data";
}

# the finished fsck job of the admin location at $prefix
sub fsck {
    my ($t, $prefix) = @_;

    my $r;
    for (1 .. 600) {
        $r = $t->req('POST', "${prefix}fsck");
        last unless $r->{status} == 409;     # a gc holds the store
        sleep 0.1;
    }

    die "POST ${prefix}fsck: $r->{status} $r->{content}\n"
        unless $r->{status} == 202;

    my $id = decode_json($r->{content})->{id};

    for (1 .. 2400) {
        $r = $t->req('GET', "${prefix}jobs/$id");
        my $j = decode_json($r->{content});
        return $j if $j->{state} ne 'running';
        sleep 0.05;
    }

    die "fsck job $id did not end\n";
}

sub check {
    my ($t, %o) = @_;

    my $name = $o{name} // 'store';

    Test::More::is(join("\n", problems($t->root)), '',
                   "$name: blobs hash to their names, links are whole, "
                   . 'no stray files');

    return unless $o{admin};

    my $j = fsck($t, $o{admin});
    my $report = $j->{report} // {};

    Test::More::is($j->{state} . ' ' . ($report->{problems_total} // '-'),
                   'done 0', "$name: fsck finds no problem")
        or Test::More::diag(JSON::PP->new->canonical->encode($report));
}

1;

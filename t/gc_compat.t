#!/usr/bin/perl

# Garbage collection on a store distribution shares (store_gc.c):
#   A. a store the module wrote and collected: distribution's own
#      `docker-registry garbage-collect` finds nothing more to remove and
#      every tagged image still pulls;
#   B. a store distribution wrote (`docker-registry serve`, pushed with
#      skopeo): the module's gc, with and without delete_untagged, keeps
#      every tagged image, pulled from both servers, and removes the
#      blobs of the image distribution deleted.

use strict;
use warnings;

use Test::More;
use File::Find;
use File::Temp qw(tempdir);

use lib 't/lib';
use RegTest;
use RegTools qw(need_tools skopeo_ok build_oci_image add_oci_index
                oci_manifest run_cmd start_distribution stop_distribution);
use RegGc qw(run_gc);

need_tools(qw(skopeo umoci docker-registry));

my $tmp = tempdir('gc-compat-t-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

# the layout's images: a, b (sharing nothing), c (to delete), and an
# index over two platforms

my $a = build_oci_image("$tmp/src", 'a', seed => 21);
my $b = build_oci_image("$tmp/src", 'b', seed => 22);
my $c = build_oci_image("$tmp/src", 'c', seed => 23);
my $amd = build_oci_image("$tmp/src", 'amd64', seed => 24);
my $arm = build_oci_image("$tmp/src", 'arm64', seed => 25, arch => 'arm64');
my $idx = add_oci_index("$tmp/src", 'multi', ['amd64', 'amd64'],
                        ['arm64', 'arm64']);

sub blobs_of {
    return ($_[0]{digest}, $_[0]{config}{digest},
            map { $_->{digest} } @{ $_[0]{layers} });
}

sub blobs_in {
    my ($root) = @_;
    my %s;
    for (glob("$root/docker/registry/v2/blobs/sha256/*/*/data")) {
        $s{"sha256:$1"} = 1 if m{/([0-9a-f]{64})/data$};
    }
    return \%s;
}

sub age {
    my ($root) = @_;
    my $then = time - 7200;
    find({ no_chdir => 1, wanted => sub { utime($then, $then, $_) if -f } },
         grep { -d } map { "$root/docker/registry/v2/$_" }
                     qw(blobs repositories _ngx_tombstones));
}

sub push_all {
    my ($reg) = @_;
    for my $tag (qw(a b c)) {
        skopeo_ok("push $tag to $reg", 'copy', '--dest-tls-verify=false',
                  "oci:$tmp/src:$tag", "docker://$reg/compat/img:$tag");
    }
    skopeo_ok("push the index to $reg", 'copy', '--all',
              '--dest-tls-verify=false', "oci:$tmp/src:multi",
              "docker://$reg/compat/multi:v1");
}

sub pulls_ok {
    my ($what, $reg) = @_;
    for my $tag (qw(a b)) {
        my $dir = "$tmp/pull-" . rand();
        skopeo_ok("$what: $reg: pull compat/img:$tag", 'copy',
                  '--src-tls-verify=false',
                  "docker://$reg/compat/img:$tag", "oci:$dir:$tag");
        is(oci_manifest($dir, $tag)->{digest},
           ($tag eq 'a' ? $a : $b)->{digest}, "$what: $reg: same $tag");
    }
    my $dir = "$tmp/pull-" . rand();
    skopeo_ok("$what: $reg: pull the index", 'copy', '--all',
              '--src-tls-verify=false', "docker://$reg/compat/multi:v1",
              "oci:$dir:v1");
    is(oci_manifest($dir, 'v1')->{digest}, $idx->{digest},
       "$what: $reg: same index");
}

sub delete_c {
    my ($t, $url) = @_;
    my $http = HTTP::Tiny->new(timeout => 30);
    my $r = $http->request('DELETE', "$url/v2/compat/img/manifests/"
                                     . $c->{digest});
    is($r->{status}, 202, "delete c at $url");
}

my %c_only = map { $_ => 1 } blobs_of($c);
delete @c_only{ map { blobs_of($_) } $a, $b, $amd, $arm };
my @tagged = (blobs_of($a), blobs_of($b), blobs_of($amd), blobs_of($arm),
              $idx->{digest});

###############################################################################
# A. the module writes and collects; distribution's gc removes nothing more

{
    my $t = RegTest->new(delete => 1, RegGc::options());
    my $reg = '127.0.0.1:' . $t->port;

    push_all($reg);
    delete_c($t, 'http://' . $reg);

    age($t->root);
    run_gc($t, grace => 0);
    age($t->root);
    my $rep = run_gc($t, grace => 0);
    is($rep->{blobs_removed}, scalar keys %c_only,
       'A: the module\'s gc removed c\'s own blobs');

    my $before = blobs_in($t->root);
    ok(!grep({ $before->{$_} } keys %c_only), 'A: none of c\'s is left');
    ok(!grep({ !$before->{$_} } @tagged), 'A: every tagged blob is there');

    my $dist = start_distribution($t->root);
    stop_distribution($dist);

    my ($rc, $out) = run_cmd(['docker-registry', 'garbage-collect',
                              $dist->{config}], timeout => 60);
    is($rc, 0, 'A: docker-registry garbage-collect runs') or diag($out);
    is_deeply([ sort keys %{ blobs_in($t->root) } ], [ sort keys %$before ],
              'A: and removes nothing the module kept');

    # (not --delete-untagged: distribution 2.8 then deletes the children
    # of an index, which breaks it: the mistake the module's gc avoids)

    pulls_ok('A, after both collectors', $reg);
    $t->stop;
}

###############################################################################
# B. distribution writes; the module collects

{
    my $root = tempdir('gc-compat-store-XXXXXXXX', TMPDIR => 1,
                       CLEANUP => 1);
    my $dist = start_distribution($root);
    my $dreg = '127.0.0.1:' . $dist->{port};

    push_all($dreg);
    delete_c(undef, $dist->{url});

    my $t = RegTest->new(delete => 1, RegGc::options(root => $root));
    my $reg = '127.0.0.1:' . $t->port;

    my $all = blobs_in($root);
    ok(!grep({ !$all->{$_} } @tagged, keys %c_only),
       'B: distribution stored every blob');

    for my $pass (1, 2) {
        age($root);
        my $rep = run_gc($t, grace => 0);
        is($rep->{problems_found}, 0, "B: pass $pass: no problem found")
            or diag explain $rep->{problems};
        is($rep->{manifests}, 5, "B: pass $pass: five manifests read");
    }

    my $now = blobs_in($root);
    ok(!grep({ $now->{$_} } keys %c_only), 'B: c\'s own blobs are gone');
    ok(!grep({ !$now->{$_} } @tagged), 'B: every tagged blob is there');
    pulls_ok('B, after gc', $reg);
    pulls_ok('B, after gc', $dreg);

    for my $pass (1, 2) {
        age($root);
        run_gc($t, grace => 0, delete_untagged => 1);
    }

    $now = blobs_in($root);
    ok(!grep({ !$now->{$_} } @tagged),
       'B: delete_untagged: every tagged blob is there');
    pulls_ok('B, after gc with delete_untagged', $reg);
    pulls_ok('B, after gc with delete_untagged', $dreg);

    stop_distribution($dist);
    $t->stop;
}

done_testing();

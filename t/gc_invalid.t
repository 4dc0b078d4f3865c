#!/usr/bin/perl

# A manifest whose bytes do not parse keeps a garbage collection from
# removing anything (store_gc.c): what it references is unknown.  Both
# ways a run meets one: a tagged revision (marked from its tag) and, with
# delete_untagged, an old untagged one (removable, so never marked).  The
# same store with the bytes whole: the orphan blob goes.

use strict;
use warnings;

use Test::More;
use File::Find;
use File::Path qw(remove_tree);

use lib 't/lib';
use RegTest;
use RegGc qw(run_gc);

my $t = RegTest->new(delete => 1, RegGc::options());
my $v2 = $t->root . '/docker/registry/v2';

my $tagged = $t->push_image('app', 'v1');
my $untagged = $t->push_image('app', 'v2');
remove_tree("$v2/repositories/app/_manifests/tags/v2");
my $orphan = $t->push_blob('app', 'orphan ' . rand());

# everything an hour old: nothing is young for the grace
sub age_store {
    my $past = time - 3600;
    find({ no_chdir => 1, wanted => sub { utime $past, $past, $_ } }, $v2);
}

sub spoil {
    my ($img) = @_;
    RegTest::spew($t->blob_path($img->{digest}), 'not a manifest');
}

sub mend {
    my ($img) = @_;
    RegTest::spew($t->blob_path($img->{digest}), $img->{manifest});
}

spoil($tagged);
age_store();
my $r = run_gc($t, grace => 0);
ok($r->{removed_nothing}, 'a tagged manifest that does not parse: '
                          . 'removed_nothing');
is($r->{blobs_tombstoned}, 0, '... nothing tombstoned');
ok(-e $t->blob_path($orphan), '... the orphan kept');

mend($tagged);
spoil($untagged);
age_store();
$r = run_gc($t, grace => 0, delete_untagged => 1);
ok($r->{removed_nothing}, 'an old untagged manifest that does not parse, '
                          . 'delete_untagged: removed_nothing');
is($r->{blobs_tombstoned} + $r->{revisions_removed}, 0,
   '... nothing tombstoned, no revision removed');
ok(-e $t->blob_path($orphan), '... the orphan kept');

mend($untagged);
age_store();
$r = run_gc($t, grace => 0);
ok(!$r->{removed_nothing}, 'the bytes whole: the run may remove');
ok(!-e $t->blob_path($orphan), '... the orphan tombstoned');

$t->stop;

done_testing();

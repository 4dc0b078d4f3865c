#!/usr/bin/perl

# Garbage collection removes a blob's layer links before its bytes
# (store_gc.c, gc_unlink_links()), so that a run cut short anywhere (nginx
# killed, a power cut) leaves no link to bytes that are gone: strace (-yy
# names each descriptor's file) follows the worker through the run that
# deletes a tombstone linked from two repositories, and each link's
# unlinkat() and then the fsync() of the directory that lost it come
# before the tombstone's unlinkat().  An untagged revision removed
# (delete_untagged) is synced the same way, in the run before the one
# that may delete its bytes.

use strict;
use warnings;

use Test::More;
use File::Find;
use Time::HiRes qw(sleep);

use lib 't/lib';
use RegTest;
use RegGc qw(run_gc);

my $OCI = 'application/vnd.oci.image.manifest.v1+json';

plan(skip_all => 'no /usr/bin/strace') unless -x '/usr/bin/strace';

my $t = RegTest->new(delete => 1, RegGc::options());
my $v2 = $t->root . '/docker/registry/v2';

sub age {
    my $then = time - 7200;
    find({ no_chdir => 1, wanted => sub { utime($then, $then, $_) if -f } },
         grep { -d } map { "$v2/$_" }
                     qw(blobs repositories _ngx_tombstones));
}

# an orphan blob linked in two repositories: the first run moves it
# aside and keeps its links (a manifest put may still bring it back)
my $bytes = 'an orphan of two repositories ' . rand();
my $d = $t->push_blob('ord/a', $bytes);
is($t->push_blob('ord/b', $bytes), $d, 'the orphan linked in ord/b too');
(my $hex = $d) =~ s/^sha256://;

# an untagged manifest, pushed by digest
my $config = '{"architecture":"amd64","os":"linux","n":"' . rand() . '"}';
my $cd = $t->push_blob('ord/c', $config);
my $m = qq({"schemaVersion":2,"mediaType":"$OCI","config":)
        . qq({"mediaType":"application/vnd.oci.image.config.v1+json",)
        . qq("digest":"$cd","size":) . length($config) . '},"layers":[]}';
my $md = RegTest::digest($m);
is($t->push_manifest('ord/c', $md, $m, $OCI)->{status}, 201,
   'an untagged manifest pushed');
(my $mhex = $md) =~ s/^sha256://;

age();

my ($worker) = $t->pids_of_workers;
my $trace = $t->dir . '/strace.out';
my $pid = fork // die "fork: $!\n";

if ($pid == 0) {
    open STDERR, '>', '/dev/null';
    exec '/usr/bin/strace', '-f', '-yy', '-s', '200', '-o', $trace,
         '-e', 'trace=fsync,unlinkat,write,writev', '-p', $worker;
    exit 127;
}

for (1 .. 100) {
    $t->req('GET', '/v2/');
    last if RegTest::slurp($trace) =~ /HTTP\/1\.1 200/;
    sleep 0.1;
}

my $rep = run_gc($t, grace => 0, delete_untagged => 1);
is_deeply([ sort @{ $rep->{tombstoned} } ], [ sort $d, $cd, $md ],
          'first run: the orphan and the untagged image are tombstones');
is($rep->{revisions_removed}, 1, 'first run: the untagged revision goes');
ok(-f $t->layer_link($_, $d), "first run: the orphan's link in $_ stays")
    for qw(ord/a ord/b);

age();
$rep = run_gc($t, grace => 0, delete_untagged => 1);
is_deeply([ sort @{ $rep->{removed} } ], [ sort $d, $cd, $md ],
          'second run: the tombstones are deleted');
is($rep->{links_removed}, 3, 'second run: with their links');

# the jobs' ends are logged after the runs: in the trace
for (1 .. 100) {
    last if (() = RegTest::slurp($trace) =~ /\(gc\) done/g) >= 2;
    sleep 0.1;
}
kill 'INT', $pid;
waitpid $pid, 0;

# the calls of the run, in order: what each is, by its file and name
my @calls;
for my $line (split /\n/, RegTest::slurp($trace)) {
    next if $line =~ /resumed>/;
    my ($call, $args) = $line =~ /^\d+\s+(\w+)\((.*)$/ or next;
    next unless $call eq 'fsync' || $call eq 'unlinkat';
    my ($file) = $args =~ /<([^<>]*)>/ or next;
    $file =~ s{^\Q$v2\E/?}{};
    my ($name) = $args =~ /"([^"]*)"/;
    push @calls, "$call $file" . (defined $name ? " $name" : '');
}

sub first_of {
    my ($what) = @_;
    for my $i (0 .. $#calls) {
        return $i if $calls[$i] eq $what;
    }
    return -1;
}

my $tomb = first_of("unlinkat _ngx_tombstones/sha256 $hex");
ok($tomb >= 0, 'the tombstone\'s unlinkat() is in the trace')
    or diag(join "\n", @calls);

for my $repo (qw(ord/a ord/b)) {
    my $layers = "repositories/$repo/_layers/sha256";
    my $link = first_of("unlinkat $layers/$hex link");
    my $sync = -1;
    for my $i ($link + 1 .. $#calls) {
        if ($calls[$i] eq "fsync $layers") {
            $sync = $i;
            last;
        }
    }

    ok($link >= 0 && $sync > $link && $tomb > $sync,
       "$repo: the link goes, its directory is synced, then the bytes")
        or diag(join "\n", @calls);
}

my $rev = "repositories/ord/c/_manifests/revisions/sha256";
my $unrev = first_of("unlinkat $rev/$mhex link");
my $rsync = -1;
for my $i ($unrev + 1 .. $#calls) {
    if ($calls[$i] eq "fsync $rev") {
        $rsync = $i;
        last;
    }
}
ok($unrev >= 0 && $rsync > $unrev
   && $rsync < first_of("unlinkat _ngx_tombstones/sha256 $mhex"),
   'the untagged revision goes, synced, a run before its bytes')
    or diag(join "\n", @calls);

ok(!-e "$v2/_ngx_tombstones/sha256/$hex", 'the tombstone is gone');
ok(!-e $t->layer_link($_, $d), "the link in $_ is gone") for qw(ord/a ord/b);

$t->stop;

done_testing();

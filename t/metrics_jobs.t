#!/usr/bin/perl

# The maintenance jobs in the metrics: a gc run is counted with the blobs
# and bytes its report says it removed (a dry run removes nothing and adds
# nothing), an fsck run with the problems it found; exact deltas.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use Time::HiRes qw(sleep);

use lib 't/lib';
use RegTest;
use RegGc qw(run_gc);

my $t = RegTest->new(delete => 1, RegGc::options(
    server_extra => "location = /metrics { registry_metrics; }\n"));
my $V2 = $t->root . '/docker/registry/v2';

sub scrape {
    my $r = $t->req('GET', '/metrics');
    die "scrape: $r->{status}\n" unless $r->{status} == 200;
    my %m = $r->{content} =~ /^([a-z_]+(?:\{[^}]*\})?) (\d+)$/mg;
    return \%m;
}

# the job's counters are updated when its worker learns it ended, which
# may be a moment after its report was saved
sub scrape_until {
    my ($key, $want) = @_;
    my $m;
    for (1 .. 100) {
        $m = scrape();
        last if ($m->{$key} // -1) == $want;
        sleep 0.05;
    }
    return $m;
}

sub fsck {
    my $r = $t->req('POST', '/admin/fsck');
    die "POST fsck: $r->{status} $r->{content}\n" unless $r->{status} == 202;
    my $id = decode_json($r->{content})->{id};
    for (1 .. 1200) {
        my $j = decode_json($t->req('GET', "/admin/jobs/$id")->{content});
        return $j if $j->{state} ne 'running';
        sleep 0.05;
    }
    die "fsck did not end\n";
}

# files of the store are old: the grace (0 here) protects nothing
sub age_store {
    my $then = time - 7200;
    my @all;
    my $walk;
    $walk = sub {
        my ($d) = @_;
        opendir(my $dh, $d) or return;
        for (grep { !/^\.\.?$/ } readdir $dh) {
            push @all, "$d/$_";
            $walk->("$d/$_") if -d "$d/$_" && !-l "$d/$_";
        }
    };
    $walk->($V2);
    utime($then, $then, @all);
}

###############################################################################

my $before = scrape();

# gc: an image is deleted, its blobs (manifest, config, layer) go in two
# runs, tombstones first

my $keep = $t->push_image('mj/keep', 'v1');
my $gone = $t->push_image('mj/gone', 'v1', layers => ['a layer only gone has']);
is($t->req('DELETE', "/v2/mj/gone/manifests/$gone->{digest}")->{status}, 202,
   'image deleted');
age_store();

my $dry = run_gc($t, grace => 0, dry_run => 1);
my $m = scrape_until('registry_gc_runs_total{result="ok"}',
                     ($before->{'registry_gc_runs_total{result="ok"}'} // 0)
                     + 1);
is($m->{registry_gc_blobs_removed_total},
   $before->{registry_gc_blobs_removed_total}, 'dry run: no blob counted');

my @reports = (run_gc($t, grace => 0));
age_store();
push @reports, run_gc($t, grace => 0);

my ($blobs, $bytes) = (0, 0);
$blobs += $_->{blobs_removed} for @reports;
$bytes += $_->{bytes_freed} for @reports;
is($blobs, 3, 'gc: the deleted image\'s three blobs removed in two runs');
ok($bytes > 0, 'gc: bytes freed');

$m = scrape_until('registry_gc_runs_total{result="ok"}',
                  ($before->{'registry_gc_runs_total{result="ok"}'} // 0) + 3);
is($m->{'registry_gc_runs_total{result="ok"}'}
   - $before->{'registry_gc_runs_total{result="ok"}'}, 3, 'gc: 3 runs counted');
is($m->{'registry_gc_runs_total{result="failed"}'},
   $before->{'registry_gc_runs_total{result="failed"}'}, 'gc: none failed');
is($m->{registry_gc_blobs_removed_total}
   - $before->{registry_gc_blobs_removed_total}, $blobs,
   'gc: blobs removed as the reports say');
is($m->{registry_gc_bytes_freed_total}
   - $before->{registry_gc_bytes_freed_total}, $bytes,
   'gc: bytes freed as the reports say');
is($t->req('GET', "/v2/mj/keep/manifests/v1")->{status}, 200,
   'gc: the kept image is there');

# fsck: a clean store, then a layer link whose blob is gone

my $j = fsck();
is($j->{state}, 'done', 'fsck: done');
$m = scrape_until('registry_fsck_runs_total{result="ok"}',
                  ($before->{'registry_fsck_runs_total{result="ok"}'} // 0)
                  + 1);
is($m->{registry_fsck_problems}, 0, 'fsck: a clean store has no problem');

(my $hex = $keep->{layers}[0]) =~ s/^sha256://;
unlink("$V2/blobs/sha256/" . substr($hex, 0, 2) . "/$hex/data")
    or die "unlink: $!";

$j = fsck();
ok($j->{report}{problems_total} >= 1, 'fsck: the missing blob found');
$m = scrape_until('registry_fsck_runs_total{result="ok"}',
                  ($before->{'registry_fsck_runs_total{result="ok"}'} // 0)
                  + 2);
is($m->{'registry_fsck_runs_total{result="ok"}'}
   - $before->{'registry_fsck_runs_total{result="ok"}'}, 2, 'fsck: 2 runs');
is($m->{registry_fsck_problems}, $j->{report}{problems_total},
   'fsck: the last run\'s problems');

done_testing();

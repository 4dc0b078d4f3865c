#!/usr/bin/perl

# registry_gc: the scheduled collection, in one of two workers, at the
# multiples of its interval: an orphan blob becomes a tombstone, then
# goes, while the tagged image stays whole; the directive's errors.

use strict;
use warnings;

use Test::More;
use File::Find;
use File::Temp qw(tempdir);
use JSON::PP;
use Time::HiRes qw(sleep);

use lib 't/lib';
use RegTest;
use RegGc;
use RegTools qw(run_cmd);

my $t = RegTest->new(delete => 1, workers => 2,
                     location_extra => 'registry_gc interval=2s grace=0;',
                     RegGc::options());
my $V2 = $t->root . '/docker/registry/v2';

my $img = $t->push_image('sched/a', 'v1');
my $orphan = $t->push_blob('sched/a', 'an orphan ' . rand());
my ($hex) = $orphan =~ /^sha256:(.*)/;

# old enough for grace 0 and the collector's second of slack
my $then = time - 7200;
find({ no_chdir => 1, wanted => sub { utime($then, $then, $_) if -f } },
     "$V2/blobs", "$V2/repositories");

sub wait_for {
    my ($cond) = @_;
    for (1 .. 200) {
        return 1 if $cond->();
        sleep 0.1;
    }
    return 0;
}

ok(wait_for(sub { -e "$V2/_ngx_tombstones/sha256/$hex" }),
   'the scheduled gc made the orphan a tombstone');
ok(!-e $t->blob_path($orphan), 'its bytes left blobs/');

# its second grace (0, and the second of slack) counts from the record
# of the run that moved it aside
ok(wait_for(sub { !-e "$V2/_ngx_tombstones/sha256/$hex" }),
   'a later run deleted it');

for my $d ($img->{digest}, $img->{config}, @{ $img->{layers} }) {
    ok(-f $t->blob_path($d), "the tagged image's $d stays");
}
is($t->req('GET', '/v2/sched/a/manifests/v1',
           headers => { Accept => $img->{type} })->{status},
   200, 'the image is served');

my $r = $t->req('GET', '/admin/jobs');
my $jobs = eval { JSON::PP->new->decode($r->{content}) } || {};
my @gc = grep { ref $_ eq 'HASH' && ($_->{kind} // '') eq 'gc' }
         @{ ref $jobs eq 'HASH' ? $jobs->{jobs} // [] : $jobs };
ok(@gc >= 2, 'the admin location lists the scheduled gc jobs')
    or diag $r->{content};

my @started = $t->error_log =~ /job "[^"]+" \(gc\) started/g;
ok(@started >= 2, 'gc jobs were started');

$t->stop;

# the directive's errors: nginx -t refuses them

my $dir = tempdir('gc-schedule-t-XXXXXXXX', TMPDIR => 1, CLEANUP => 1);

for my $case (['registry_gc grace=1h;', qr/needs "interval="/],
              ['registry_gc interval=0;', qr/invalid parameter/],
              ['registry_gc interval=1h often;', qr/invalid parameter/],
              ['registry_gc interval=1h; registry_thread_pool off;',
               qr/"registry_gc" needs a "registry_thread_pool"/])
{
    my ($directives, $error) = @$case;
    RegTest::spew("$dir/nginx.conf", <<"EOF");
load_module $RegTest::MODULE;
error_log $dir/error.log;
pid $dir/nginx.pid;
events { }
http {
    server {
        listen 127.0.0.1:1;
        location /v2/ { registry on; registry_root $dir/store; $directives }
    }
}
EOF
    my (undef, $out) = run_cmd([$RegTest::NGINX, '-t', '-p', "$dir/",
                                '-c', "$dir/nginx.conf"],
                               env => { RegTest::nginx_env($dir) });
    like($out, $error, "nginx -t refuses: $directives");
}

done_testing();

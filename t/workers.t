#!/usr/bin/perl

# Two worker processes: upload state lives in the store, not in a worker,
# and concurrent writers of the same blob, tag or upload do not collide.

use strict;
use warnings;

use Test::More;
use JSON::PP;
use POSIX ();

use lib 't/lib';
use RegTest;

my $API = 'registry/2.0';

# reuseport spreads connections over the workers; pids.log (relative to the
# prefix) tells which worker answered

my $t = RegTest->new(
    workers => 2,
    listen_extra => 'reuseport',
    http_extra => 'log_format pids "$pid $request_method $status";',
    server_extra => 'access_log pids.log pids;',
);

my @workers = $t->pids_of_workers;
is(scalar @workers, 2, 'two workers');

# runs $code in $n children at once; each returns its exit code (a die is
# exit code 1); returns the exit codes

sub parallel {
    my ($n, $code) = @_;
    my @pids;
    for my $i (1 .. $n) {
        my $pid = fork();
        die "fork: $!" unless defined $pid;
        if ($pid == 0) {
            my $rc = eval { $code->($i) };
            print STDERR "# child $i: $@" if $@;
            POSIX::_exit(defined $rc ? $rc : 1);
        }
        push @pids, $pid;
    }
    my @rc;
    for my $pid (@pids) {
        waitpid($pid, 0);
        push @rc, $? >> 8;
    }
    return @rc;
}

sub pids_log {
    open my $fh, '<', $t->dir . '/pids.log' or return ();
    return map { (split)[0] } <$fh>;
}

# one chunked upload, every chunk on its own connection

my $blob = join '', map { sprintf "%08d", $_ } 1 .. 8192;   # 64 KiB
my $d = RegTest::digest($blob);

my $r = $t->req('POST', '/v2/w/blobs/uploads/');
is($r->{status}, 202, 'upload started');
my $loc = $r->{headers}{location};

my $before = () = pids_log();
my $ok = 1;
my $size = 2048;
for (my $off = 0; $off < length $blob; $off += $size) {
    my $end = $off + $size - 1;
    $r = $t->req('PATCH', $loc, headers => { 'Content-Range' => "$off-$end" },
                 content => substr($blob, $off, $size));
    unless ($r->{status} == 202 && $r->{headers}{range} eq "0-$end") {
        diag("PATCH $off-$end: $r->{status} " . ($r->{headers}{range} // '')
             . " $r->{content}");
        $ok = 0;
        last;
    }
    $r = $t->req('GET', $loc);
    unless ($r->{status} == 204 && $r->{headers}{range} eq "0-$end") {
        diag("GET after $off-$end: $r->{status} " . ($r->{headers}{range} // ''));
        $ok = 0;
        last;
    }
}
ok($ok, '32 chunks on separate connections');

$r = $t->req('PUT', "$loc?digest=$d");
is($r->{status}, 201, 'upload completed');
is($r->{headers}{'docker-distribution-api-version'}, $API, 'put api version');
ok($t->req('GET', "/v2/w/blobs/$d")->{content} eq $blob, 'read back');

my @log = pids_log();
my %served = map { $_ => 1 } @log[$before .. $#log];
is(scalar keys %served, 2, 'both workers took part');

# the same blob pushed by 16 clients at once, in 4 repositories

my $same = pack('N*', map { $_ * 2654435761 % 4294967296 } 1 .. 262144);  # 1 MiB
my $sd = RegTest::digest($same);

my @rc = parallel(16, sub {
    my ($i) = @_;
    my $r = $t->req('POST', '/v2/same' . ($i % 4) . "/blobs/uploads/?digest=$sd",
                    content => $same);
    die "$r->{status}\n" unless $r->{status} == 201
        && $r->{headers}{'docker-content-digest'} eq $sd;
    0;
});
is("@rc", join(' ', (0) x 16), '16 concurrent monolithic pushes of one blob');

for my $i (0 .. 3) {
    $r = $t->req('GET', "/v2/same$i/blobs/$sd");
    ok($r->{status} == 200 && $r->{content} eq $same, "concurrent blob in same$i");
}

# the same blob again, by 8 chunked uploads at once

@rc = parallel(8, sub {
    my $r = $t->req('POST', '/v2/same0/blobs/uploads/');
    die "POST $r->{status} $r->{content}\n" unless $r->{status} == 202;
    my $loc = $r->{headers}{location};
    my $half = length($same) / 2;
    $r = $t->req('PATCH', $loc, headers => { 'Content-Range' => '0-' . ($half - 1) },
                 content => substr($same, 0, $half));
    die "PATCH $r->{status} $r->{content}\n" unless $r->{status} == 202;
    $r = $t->req('PUT', "$loc?digest=$sd",
                 headers => { 'Content-Range' => "$half-" . (2 * $half - 1) },
                 content => substr($same, $half));
    die "PUT $r->{status} $r->{content}\n" unless $r->{status} == 201;
    0;
});
is("@rc", join(' ', (0) x 8), '8 concurrent chunked uploads of one blob');
ok($t->req('GET', "/v2/same0/blobs/$sd")->{content} eq $same,
   'blob intact after concurrent uploads');

# different blobs pushed at once

@rc = parallel(12, sub {
    my ($i) = @_;
    my $b = "blob number $i " x (1000 * $i);
    my $d = $t->push_blob('many', $b);
    my $r = $t->req('GET', "/v2/many/blobs/$d");
    die "GET $r->{status}\n" unless $r->{content} eq $b;
    0;
});
is("@rc", join(' ', (0) x 12), '12 different blobs at once');

# the same tag pushed at once with different manifests

my $img = $t->push_image('race', 'base');
my @manifests = map {
    JSON::PP->new->canonical->encode({
        %{ decode_json($img->{manifest}) },
        annotations => { n => "$_" },
    })
} 1 .. 10;

@rc = parallel(10, sub {
    my ($i) = @_;
    my $r = $t->push_manifest('race', 'latest', $manifests[$i - 1], $img->{type});
    die "$r->{status}\n" unless $r->{status} == 201;
    0;
});
is("@rc", join(' ', (0) x 10), '10 concurrent pushes of one tag');

$r = $t->req('GET', '/v2/race/manifests/latest');
is($r->{status}, 200, 'raced tag readable');
ok((grep { $_ eq $r->{content} } @manifests), 'raced tag is one of the pushes');
is($r->{headers}{'docker-content-digest'}, RegTest::digest($r->{content}),
   'raced tag digest matches its bytes');

for my $m (@manifests) {
    my $md = RegTest::digest($m);
    is($t->req('HEAD', "/v2/race/manifests/$md")->{status}, 200,
       "raced revision " . substr($md, 7, 8));
}

$r = $t->req('GET', '/v2/race/tags/list');
is_deeply(eval { decode_json($r->{content}) },
          { name => 'race', tags => ['base', 'latest'] }, 'raced tags list');

# chunks of one upload sent at the same time: exactly one wins, the others
# are refused (416 or another client error), the data is not doubled

$r = $t->req('POST', '/v2/w/blobs/uploads/');
$loc = $r->{headers}{location};

@rc = parallel(6, sub {
    my $r = $t->req('PATCH', $loc, headers => { 'Content-Range' => '0-9' },
                    content => '0123456789');
    return 0 if $r->{status} == 202;
    return 2 if $r->{status} >= 400 && $r->{status} < 500;
    3;
});
my $won = grep { $_ == 0 } @rc;
my $lost = grep { $_ == 2 } @rc;
is($won, 1, 'one of six racing chunks accepted');
is($won + $lost, 6, 'the others refused with a 4xx');

$r = $t->req('GET', $loc);
is($r->{headers}{range}, '0-9', 'raced upload offset');
$r = $t->req('PUT', $loc . '?digest=' . RegTest::digest('0123456789'));
is($r->{status}, 201, 'raced upload completed');

$t->stop();

done_testing();

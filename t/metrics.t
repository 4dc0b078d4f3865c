#!/usr/bin/perl

# registry_metrics: the Prometheus text of what two workers served.
# Known requests of every operation (pulls and pushes of blobs and
# manifests, a chunked upload, a mount, deletes, listings, tokens, errors
# the registry and nginx answered) are made over connections that
# reuseport spreads over both workers; the scrape after, on either
# worker, shows exactly their counts by operation and status, their
# spec error codes, the bytes of upload bodies, and the histograms'
# counts, while every counter nothing touched stays as it was.  The
# requests of some operations go over raw connections, so that the bytes
# sent and received are known to the byte.  An upload whose body is
# still coming is in progress, and no longer once its client has gone.
# A scrape is not itself counted, and reads the same twice; a reload
# keeps the counts.

use strict;
use warnings;

use Test::More;
use File::Temp qw(tempdir);
use IO::Socket::INET;
use JSON::PP;

use lib 't/lib';
use RegTest;
use JWT;

my $dir = tempdir('metrics-XXXXXXXX', TMPDIR => 1,
                  CLEANUP => !$ENV{REGTEST_LEAVE});
my $root = "$dir/store";
mkdir $root;

my $sign = JWT::genkey($dir, 'signing', 'p256');

my $t = RegTest->new(
    workers => 2,
    delete => 1,
    root => $root,
    listen_extra => 'reuseport',
    http_extra => 'log_format pids "$pid $request_uri";',
    server_extra => <<"EOF");
        access_log pids.log pids;

        location = /metrics {
            registry_metrics;
        }

        location = /token {
            registry_token_server on;
            registry_token_signing_key $sign->{key};
            registry_token_issuer metrics-issuer;
            registry_token_service metrics;
        }

        location /v2/denied/ {
            registry on;
            registry_root $root;
            deny all;
        }
EOF

# ---- scraping ----

my %type;

sub scrape {
    my $r = $t->req('GET', '/metrics');
    die "scrape: $r->{status}\n" unless $r->{status} == 200;

    my %m;

    for my $line (split /\n/, $r->{content}) {
        if ($line =~ /^# TYPE (\S+) (counter|gauge|histogram)$/) {
            $type{$1} = $2;
            next;
        }

        next if $line =~ /^# HELP \S+ \S/;

        $line =~ /^([a-z_]+(?:\{[^}]*\})?) (\d+(?:\.\d+)?)$/
            or die "scrape: not a sample: $line\n";
        die "scrape: $1 twice\n" if exists $m{$1};
        $m{$1} = $2;
    }

    return \%m;
}

sub req_key { "registry_http_requests_total{operation=\"$_[0]\",code=\"$_[1]\"}" }
sub sent_key { "registry_http_sent_bytes_total{operation=\"$_[0]\"}" }
sub recv_key { "registry_http_received_bytes_total{operation=\"$_[0]\"}" }
sub err_key { "registry_errors_total{code=\"$_[0]\"}" }

# what the test expects each counter to have grown by
my %want;

sub expect {
    my ($op, $status, $error) = @_;
    $want{ req_key($op, $status) }++;
    $want{ err_key($error) }++ if $error;
}

# ---- requests ----

# over HTTP::Tiny, counted in %want
sub req {
    my ($op, $error, $method, $path, %o) = @_;
    my $r = $t->req($method, $path, %o);
    expect($op, $r->{status}, $error);
    return $r;
}

# one request on a connection of its own: status, and exactly the bytes
# sent and received, which the counters of $op must grow by
sub raw {
    my ($op, $error, $method, $path, $body) = @_;
    $body //= '';

    my $request = "$method $path HTTP/1.1\r\nHost: localhost\r\n"
                  . "Connection: close\r\n"
                  . (length $body ? 'Content-Length: ' . length($body)
                                    . "\r\n" : '')
                  . "\r\n$body";
    my $reply = $t->raw($request);
    my ($status) = $reply =~ m{^HTTP/1\.1 (\d{3}) };

    expect($op, $status, $error);
    $want{ sent_key($op) } += length $reply;
    $want{ recv_key($op) } += length $request;

    return ($status // 0, $reply);
}

my $before = scrape();
is_deeply(scrape(), $before, 'a scrape counts nothing: the same twice');

my $ct = $t->req('GET', '/metrics')->{headers}{'content-type'};
is($ct, 'text/plain; version=0.0.4', 'the Prometheus text format');

# a blob push: POST ?digest=, three of them

my $upload_bytes = 0;
my @blobs = map { "metrics blob $_ " . ('x' x (100 * $_)) } 1 .. 3;
my @digests;

for my $b (@blobs) {
    my $d = RegTest::digest($b);
    my $r = req('blob_push', undef, 'POST',
                "/v2/m/app/blobs/uploads/?digest=$d", content => $b);
    is($r->{status}, 201, 'monolithic push');
    push @digests, $d;
    $upload_bytes += length $b;
}

# a chunked one: POST, PATCH, PUT

my $chunked = 'chunk one|chunk two';
my $r = req('blob_push', undef, 'POST', '/v2/m/app/blobs/uploads/');
is($r->{status}, 202, 'session opened');
my $loc = $r->{headers}{location};

$r = req('blob_push', undef, 'PATCH', $loc,
         headers => { 'Content-Type' => 'application/octet-stream',
                      'Content-Range' => '0-9' },
         content => 'chunk one|');
is($r->{status}, 202, 'a chunk');
$loc = $r->{headers}{location};

my $dc = RegTest::digest($chunked);
$r = req('blob_push', undef, 'PUT', "$loc?digest=$dc",
         headers => { 'Content-Type' => 'application/octet-stream' },
         content => 'chunk two');
is($r->{status}, 201, 'the last chunk commits');
$upload_bytes += length $chunked;

# a PUT with an invalid digest is refused before any byte: no commit

$r = req('blob_push', 'DIGEST_INVALID', 'PUT',
         '/v2/m/app/blobs/uploads/' . ('0' x 8) . '-0000-4000-8000-'
         . ('0' x 12) . '?digest=sha256:nothex');
is($r->{status}, 400, 'PUT with an invalid digest');

# blob pulls, raw: GET and HEAD, and one unknown

for my $d (@digests) {
    my ($status) = raw('blob_pull', undef, 'GET', "/v2/m/app/blobs/$d");
    is($status, 200, 'blob GET');
}

my ($status) = raw('blob_pull', undef, 'HEAD', "/v2/m/app/blobs/$digests[0]");
is($status, 200, 'blob HEAD');

($status) = raw('blob_pull', 'BLOB_UNKNOWN', 'GET',
                '/v2/m/app/blobs/' . RegTest::digest('never pushed'));
is($status, 404, 'unknown blob');

# a mount from m/app into m/other

$r = req('mount', undef, 'POST',
         "/v2/m/other/blobs/uploads/?mount=$digests[0]&from=m/app");
is($r->{status}, 201, 'mount');

# manifests: a push, three GETs and a HEAD, an unknown tag, a delete

my $config = '{"architecture":"amd64","os":"linux"}';
my $dcfg = RegTest::digest($config);
req('blob_push', undef, 'POST', "/v2/m/app/blobs/uploads/?digest=$dcfg",
    content => $config);
$upload_bytes += length $config;

my $manifest = JSON::PP->new->canonical->encode({
    schemaVersion => 2,
    mediaType => 'application/vnd.oci.image.manifest.v1+json',
    config => { mediaType => 'application/vnd.oci.image.config.v1+json',
                digest => $dcfg, size => length $config },
    layers => [ map { { mediaType => 'application/vnd.oci.image.layer.v1.tar',
                        digest => $digests[$_],
                        size => length $blobs[$_] } } 0 .. 2 ],
});
my $dm = RegTest::digest($manifest);

$r = req('manifest_push', undef, 'PUT', '/v2/m/app/manifests/v1',
         headers => { 'Content-Type'
                      => 'application/vnd.oci.image.manifest.v1+json' },
         content => $manifest);
is($r->{status}, 201, 'manifest push');

my $gets = 3;

for (1 .. $gets) {
    is(req('manifest_pull', undef, 'GET', '/v2/m/app/manifests/v1')
       ->{status}, 200, 'manifest GET');
}

is(req('manifest_pull', undef, 'HEAD', "/v2/m/app/manifests/$dm")->{status},
   200, 'manifest HEAD');
is(req('manifest_pull', 'MANIFEST_UNKNOWN', 'GET',
       '/v2/m/app/manifests/nosuchtag')->{status}, 404, 'unknown manifest');
$gets++;

is(req('blob_delete', undef, 'DELETE', "/v2/m/other/blobs/$digests[0]")
   ->{status}, 202, 'blob delete');

# listings, raw: tags, the catalog, referrers

($status) = raw('tags', undef, 'GET', '/v2/m/app/tags/list');
is($status, 200, 'tags');
($status) = raw('tags', 'NAME_UNKNOWN', 'GET', '/v2/m/none/tags/list');
is($status, 404, 'tags of an unknown repository');
($status) = raw('catalog', undef, 'GET', '/v2/_catalog');
is($status, 200, 'catalog');
($status) = raw('referrers', undef, 'GET', "/v2/m/app/referrers/$dm");
is($status, 200, 'referrers');
($status) = raw('base', undef, 'GET', '/v2/');
is($status, 200, 'base');

is(req('manifest_delete', undef, 'DELETE', "/v2/m/app/manifests/$dm")
   ->{status}, 202, 'manifest delete');

# answers without an endpoint: an unknown route, an invalid name, and
# nginx's own 403 in a registry location

is(req('other', 'NOT_FOUND', 'GET', '/v2/m/app/nothing/here')->{status}, 404,
   'unknown route');
is(req('other', 'NAME_INVALID', 'GET', '/v2/M/App/tags/list')->{status}, 400,
   'invalid name');
is(req('other', 'DENIED', 'GET', '/v2/denied/x/tags/list')->{status}, 403,
   "nginx's deny");
is(req('other', 'UNSUPPORTED', 'POST', '/v2/m/app/tags/list')->{status}, 405,
   'method not allowed');

# tokens: the issuer, anonymous

for (1 .. 2) {
    is(req('token', undef, 'GET', '/token?service=metrics&scope='
           . 'repository:m/app:pull')->{status}, 200, 'a token');
}

# ---- the counts ----

# a request is counted once its answer has gone, maybe a moment after the
# client has it, and maybe by the other worker: wait until all are in

my $after;

sub delta {
    my ($k) = @_;
    return ($after->{$k} // 0) - ($before->{$k} // 0);
}

sub requests_in {
    my $n = 0;
    $n += delta($_) for grep { /^registry_http_requests_total/ }
                        keys %$after;
    return $n;
}

my $requests = 0;
$requests += $want{$_} for grep { /^registry_http_requests_total/ }
                           keys %want;

for (1 .. 100) {
    $after = scrape();
    last if requests_in() >= $requests;
    select undef, undef, undef, 0.05;
}

is(requests_in(), $requests, "all $requests requests counted");

my %keys = map { $_ => 1 } keys %$before, keys %$after;

for my $k (sort grep { /^registry_http_requests_total|^registry_errors_total/ }
           keys %keys)
{
    is(delta($k), $want{$k} // 0, "$k grew by " . ($want{$k} // 0));
}

for my $k (sort grep { /^registry_http_requests_total/ } keys %want) {
    ok(exists $after->{$k}, "$k is there");
}

for my $op (qw(blob_pull tags catalog referrers base)) {
    is(delta(sent_key($op)), $want{ sent_key($op) },
       "$op: bytes sent, to the byte");
    is(delta(recv_key($op)), $want{ recv_key($op) },
       "$op: bytes received, to the byte");
}

ok(delta(sent_key('blob_push')) > 0, 'blob_push: bytes sent');
ok(delta(recv_key('blob_push')) > $upload_bytes,
   'blob_push: bytes received, bodies and headers');

is(delta('registry_upload_bytes_total'), $upload_bytes,
   'upload bytes: every blob body');

# histograms: 4 manifest GETs (the HEAD is not one), 5 blob commits

sub histogram {
    my ($name, $n) = @_;

    my @le = map { /^${name}_bucket\{le="([^"]+)"\}$/ ? $1 : () }
             keys %$after;
    @le = sort { ($a eq '+Inf' ? 1e99 : $a) <=> ($b eq '+Inf' ? 1e99 : $b) }
          @le;

    is($le[-1], '+Inf', "$name: a +Inf bucket");
    is(scalar @le, 16, "$name: 16 buckets");

    my $prev = -1;
    my $monotonic = 1;

    for my $le (@le) {
        my $v = $after->{"${name}_bucket{le=\"$le\"}"};
        $monotonic = 0 if $v < $prev;
        $prev = $v;
    }

    ok($monotonic, "$name: buckets never decrease");
    is($after->{"${name}_bucket{le=\"+Inf\"}"}, $after->{"${name}_count"},
       "$name: count is the +Inf bucket");
    is(delta("${name}_count"), $n, "$name: count grew by $n");
    ok(delta("${name}_sum") >= 0, "$name: sum");
    is($type{$name}, 'histogram', "$name: TYPE histogram");
}

histogram('registry_manifest_get_duration_seconds', $gets);
histogram('registry_blob_put_duration_seconds', 5);

is($after->{registry_uploads_in_progress}, 0, 'no upload in progress');

is($type{registry_http_requests_total}, 'counter', 'requests: a counter');
is($type{registry_uploads_in_progress}, 'gauge', 'uploads: a gauge');

for my $k (qw(registry_gc_runs_total{result="ok"}
              registry_gc_runs_total{result="failed"}
              registry_gc_blobs_removed_total registry_gc_bytes_freed_total
              registry_fsck_runs_total{result="ok"}
              registry_fsck_problems))
{
    ok(exists $after->{$k}, "$k is there");
    is(delta($k), 0, "$k: no job ran");
}

# both workers served: the totals are of the two

my %pids;
for my $line (split /\n/, RegTest::slurp($t->dir . '/pids.log')) {
    my ($pid, $uri) = split / /, $line;
    $pids{$pid}++ if $uri =~ m{^/v2/};
}
is(scalar keys %pids, 2, 'both workers served registry requests');

# ---- an upload in progress ----

$r = $t->req('POST', '/v2/m/slow/blobs/uploads/');
is($r->{status}, 202, 'a session for a slow upload');

my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $t->port,
                              Proto => 'tcp')
    or die "connect: $!\n";
$s->autoflush(1);
print $s "PATCH $r->{headers}{location} HTTP/1.1\r\nHost: localhost\r\n"
         . "Content-Length: 1000\r\n\r\n" . ('s' x 100);

sub uploads_become {
    my ($n) = @_;
    my $v;
    for (1 .. 100) {
        $v = scrape()->{registry_uploads_in_progress};
        return $v if $v == $n;
        select undef, undef, undef, 0.1;
    }
    return $v;
}

is(uploads_become(1), 1, 'a PATCH whose body is coming is in progress');

close $s;

is(uploads_become(0), 0, 'not once its client has gone');

# a reload keeps the zone: the new workers go on counting from there

my $kept = scrape();
$t->reload;
is_deeply(scrape(), $kept, 'after a reload: the same counts');

raw('base', undef, 'GET', '/v2/');
my $k = req_key('base', 200);
my $now;
for (1 .. 100) {
    $now = scrape();
    last if $now->{$k} > $kept->{$k};
    select undef, undef, undef, 0.05;
}
is($now->{$k}, $kept->{$k} + 1, '... and one more request counts on them');

$t->stop;

done_testing();

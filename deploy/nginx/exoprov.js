// njs for deploy/nginx/exoprov.conf (Debian: apt-get install libnginx-mod-http-js).
//
// grant_key: the key of nginx's grant cache, a SHA-256 of the device's CIK and the query.
// nginx writes each cache entry's key in clear into its file: keyed by the CIK itself, the
// cache directory would hold every downloading device's credential.
var crypto = require('crypto');

function grant_key(r) {
    var cik = r.headersIn['X-Exosite-CIK'] || '';
    var query = r.variables.exoprov_query || '';
    return crypto.createHash('sha256').update(cik + '\n' + query).digest('hex');
}

export default {grant_key};

// duplex.js: the browser client arrives with the client issue.

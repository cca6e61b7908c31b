-- gwbench's fake OpenAI upstream, answering a streamed request with the same 20 SSE events + [DONE] in one write
-- (gwbench flushes each event on its own). Used by bench/overhead/one_write.py; needs gwbench's upstream/ on the
-- lua_package_path for its canned events.
local fake = require('fake_openai')
local _M = {}
local STREAM = table.concat(fake.CHUNKS) .. fake.DONE

function _M.chat()
  ngx.req.read_body()
  local body = ngx.req.get_body_data() or ""
  if string.find(body, '"stream"%s*:%s*true') then
    ngx.header["Content-Type"] = "text/event-stream; charset=utf-8"
    ngx.header["Cache-Control"] = "no-cache"
    ngx.print(STREAM)
    return
  end
  return fake.chat()
end

return _M
